//! `cargo xtask loadtest` (being written).

#[derive(clap::Args)]
pub struct LoadtestArgs {}

pub fn run(_args: LoadtestArgs) -> anyhow::Result<()> {
    anyhow::bail!("cargo xtask loadtest is not implemented yet")
}
