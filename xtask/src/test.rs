//! `cargo xtask test`: what CI runs, in order, stopping at the first failure.

use crate::util::{cargo, run};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check` and clippy (quick local runs).
    #[arg(long)]
    pub no_lint: bool,
}

pub fn run_all(args: &TestArgs) -> anyhow::Result<()> {
    if !args.no_lint {
        run(cargo().args(["fmt", "--all", "--", "--check"]))?;
        run(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    run(cargo().args(["test", "--workspace"]))?;
    Ok(())
}

pub fn run_task(args: TestArgs) -> anyhow::Result<()> {
    run_all(&args)
}
