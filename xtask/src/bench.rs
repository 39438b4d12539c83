//! `cargo xtask bench [WHAT]`: routes to one benchmark module per binary.
//! Benchmarks print figures and ratios against the tool a user would otherwise
//! pick, measured in the same run; they are not tests and never fail on speed.

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Which benchmark: aggregator, adapter, client, follow, ship, or all.
    #[arg(default_value = "all")]
    pub what: String,
    /// follow: a short run (3 s per rate, 20 s idle, 50 MB, one round).
    #[arg(long)]
    pub quick: bool,
    /// Run the binaries in DIR instead of a release build of this tree:
    /// the same harness over an earlier commit's build, for a before/after
    /// table.
    #[arg(long, env = "BENCH_BIN_DIR")]
    pub bin_dir: Option<std::path::PathBuf>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let all = args.what == "all";
    let mut matched = false;
    if all || args.what == "aggregator" {
        matched = true;
        crate::bench_aggregator::run(args.bin_dir.as_deref())?;
    }
    if all || args.what == "adapter" {
        matched = true;
        crate::bench_adapter::run(args.bin_dir.as_deref())?;
    }
    if all || args.what == "client" {
        matched = true;
        crate::bench_client::run(args.bin_dir.as_deref())?;
    }
    if all || args.what == "follow" {
        matched = true;
        crate::bench_follow::run(args.quick, args.bin_dir.as_deref())?;
    }
    if all || args.what == "ship" {
        matched = true;
        crate::bench_ship::run(args.bin_dir.as_deref())?;
    }
    anyhow::ensure!(
        matched,
        "unknown benchmark {:?}: use aggregator, adapter, client, follow, ship or all",
        args.what
    );
    Ok(())
}
