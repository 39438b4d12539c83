//! `cargo xtask bench [WHAT]`: routes to one benchmark module per binary.
//! Benchmarks print figures and ratios against the tool a user would otherwise
//! pick, measured in the same run; they are not tests and never fail on speed.

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Which benchmark: aggregator, adapter, client, or all.
    #[arg(default_value = "all")]
    pub what: String,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let all = args.what == "all";
    let mut matched = false;
    if all || args.what == "aggregator" {
        matched = true;
        crate::bench_aggregator::run()?;
    }
    if all || args.what == "adapter" {
        matched = true;
        crate::bench_adapter::run()?;
    }
    if all || args.what == "client" {
        matched = true;
        crate::bench_client::run()?;
    }
    anyhow::ensure!(
        matched,
        "unknown benchmark {:?}: use aggregator, adapter, client or all",
        args.what
    );
    Ok(())
}
