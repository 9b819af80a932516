//! `cargo xtask smoke-test`: the quick gate. Builds and runs only `static`, checks its answer, stops it.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::base::{Policy, Resolver};
use crate::experiment::{self, Built, RunPlan};
use crate::model::Outcome;

/// The variant the smoke test builds: the smallest, and the quickest to build.
const VARIANT: &str = "static";

#[derive(Args, Debug)]
pub struct SmokeTest {
    /// Where base images come from (see `cargo xtask experiment --help`).
    #[arg(long, value_enum, default_value_t = Policy::Auto)]
    pub base_source: Policy,
}

impl SmokeTest {
    pub fn run(self, sh: &xshell::Shell) -> Result<ExitCode> {
        let root = crate::project_root();
        let all = crate::variant::discover(&root.join("containers"))?;
        let setup = experiment::setup(
            sh,
            &all,
            &[VARIANT.to_string()],
            root.join("target/eco-smoke"),
        )?;
        let logs = setup.out.join("logs");
        let mut resolver = Resolver::new(&setup.docker, self.base_source, &logs);
        let variant = &setup.variants[0];
        let Built { report, image } = experiment::build(&setup, &mut resolver, variant, false)?;
        let outcome = match (report.outcome, image) {
            (Outcome::Passed, Some(info)) => {
                let plan = RunPlan {
                    load: None,
                    healthcheck: info.healthcheck,
                };
                match experiment::run(&setup.docker, &report.tag, &plan) {
                    Ok((run, _)) => match experiment::verdict(&run, None) {
                        None => {
                            println!(
                                "smoke test passed: {} answered exactly, {} checks passed, started in {:.0} ms, stopped in {:.0} ms with exit code 0",
                                report.tag,
                                run.checks.len(),
                                run.cold_start_ms,
                                run.stop_ms
                            );
                            return Ok(ExitCode::SUCCESS);
                        }
                        Some(reason) => Outcome::Failed { reason },
                    },
                    Err(reason) => Outcome::Failed { reason },
                }
            }
            (outcome, _) => outcome,
        };
        eprintln!(
            "smoke test failed: {VARIANT}: {}",
            experiment::outcome_line(&outcome)
        );
        Ok(ExitCode::FAILURE)
    }
}
