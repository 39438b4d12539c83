//! `cargo xtask e2e` (being written).

#[derive(clap::Args)]
pub struct E2eArgs {}

pub fn run(_args: E2eArgs) -> anyhow::Result<()> {
    anyhow::bail!("cargo xtask e2e is not implemented yet")
}
