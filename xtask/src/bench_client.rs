//! `cargo xtask bench client` (being written).

pub fn run() -> anyhow::Result<()> {
    anyhow::bail!("cargo xtask bench client is not implemented yet")
}
