//! `cargo xtask images` (being written).

#[derive(clap::Args)]
pub struct ImagesArgs {}

pub fn run(_args: ImagesArgs) -> anyhow::Result<()> {
    anyhow::bail!("cargo xtask images is not implemented yet")
}
