//! `cargo xtask bench aggregator` (being written).

pub fn run() -> anyhow::Result<()> {
    anyhow::bail!("cargo xtask bench aggregator is not implemented yet")
}
