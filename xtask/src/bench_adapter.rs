//! `cargo xtask bench adapter` (being written).

pub fn run() -> anyhow::Result<()> {
    anyhow::bail!("cargo xtask bench adapter is not implemented yet")
}
