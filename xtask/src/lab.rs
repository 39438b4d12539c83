//! `cargo xtask lab` (being written).

#[derive(clap::Args)]
pub struct LabArgs {}

pub fn run(_args: LabArgs) -> anyhow::Result<()> {
    anyhow::bail!("cargo xtask lab is not implemented yet")
}
