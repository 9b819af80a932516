//! `cargo xtask`: the only entry point of eco-docker's automation.
//!
//! `main` parses flags and hands each task to its own module; every task is `run(self, sh) -> Result<ExitCode>`.

mod base;
mod bench;
mod context;
mod dive;
mod docker;
mod eco;
mod experiment;
mod layers;
mod model;
mod probe;
mod report;
mod smoke_test;
mod ui;
mod variant;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "Build, measure, run and report every image variant of the eco-docker demo service."
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build every variant, measure it, run it, check its answer and write the report.
    Experiment(experiment::Experiment),
    /// The quick gate: build and run only `static`, check its answer, stop it.
    SmokeTest(smoke_test::SmokeTest),
    /// Benchmarks: the service against a bare hyper server, and the layer-compression cache cold vs warm.
    Bench(bench::Bench),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help and version to stdout with exit code 0, and usage errors as one block with 2.
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
        }
    };
    let result = run(cli);
    // Once interrupted, whatever `run` returned is a consequence of the handler removing containers
    // under it; the handler ends the process with 130 when its clean-up is done.
    if INTERRUPTED.load(Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Set by the Ctrl-C handler before it removes this run's containers.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Ctrl-C (or SIGTERM) would otherwise leave the running container behind until the next run's sweep.
    ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("interrupted: removing this run's containers");
        docker::remove_own_containers();
        std::process::exit(130);
    })?;
    let sh = xshell::Shell::new()?;
    sh.change_dir(project_root());
    match cli.task {
        Task::Experiment(task) => task.run(&sh),
        Task::SmokeTest(task) => task.run(&sh),
        Task::Bench(task) => task.run(&sh),
    }
}

/// The workspace root, found from this crate's manifest so `cargo xtask` works from any directory.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}
