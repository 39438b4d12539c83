//! `cargo xtask ...`: the project's build, test, lab, image and benchmark tasks.
//! One module per task; this file only routes the command line.
//!
//! Tasks: `test`, `images`, `lab`, `e2e`, `bench` (`bench_*`), `loadtest`,
//! `matrix`. What they share, each task using it and none owning it:
//! `util` (paths, running and stopping programs, /proc figures, apt-get),
//! `podman` (pods and containers), `kube` (deploy/'s manifests), `stats`
//! (percentiles, sizes, durations), `svg_plot` (charts), `links` (a test
//! that README.md and docs/ link only to what exists).

mod bench;
mod bench_adapter;
mod bench_aggregator;
mod bench_client;
mod bench_follow;
mod bench_ship;
mod e2e;
mod images;
mod kube;
mod lab;
#[cfg(test)]
mod links;
mod loadtest;
mod matrix;
mod podman;
mod stats;
mod svg_plot;
mod test;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Project tasks: tests, images, lab pods, benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Everything CI checks: fmt, clippy, unit and process tests, then the end-to-end pod tests.
    Test(test::TestArgs),
    /// Build the static release binaries and the scratch images.
    Images(images::ImagesArgs),
    /// Run the lab's pods locally with podman: `lab up [POD...]`, `lab down`, `lab status`.
    Lab(lab::LabArgs),
    /// Play each lab pod with podman and check what the lab promises.
    E2e(e2e::E2eArgs),
    /// Benchmarks: figures and ratios against the tools users would otherwise pick.
    Bench(bench::BenchArgs),
    /// Log-throughput load test: writer at stepped rates, followers side by side.
    Loadtest(loadtest::LoadtestArgs),
    /// Rotation matrix: every line exactly once under every rotation (real logrotate), restart and rate.
    Matrix(matrix::MatrixArgs),
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().task {
        Task::Test(args) => test::run_task(args),
        Task::Images(args) => images::run(args),
        Task::Lab(args) => lab::run(args),
        Task::E2e(args) => e2e::run(args),
        Task::Bench(args) => bench::run(args),
        Task::Loadtest(args) => loadtest::run(args),
        Task::Matrix(args) => matrix::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
