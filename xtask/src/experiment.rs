//! `cargo xtask experiment`: variant → base → build → measure → run → check → report, for every variant.
//!
//! The steps are public so `smoke-test` runs the same code on one variant with fewer measurements.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use crate::base::{Policy, Resolver};
use crate::docker::{BuildRequest, ContainerGuard, Docker};
use crate::model::{self, Outcome, VariantReport};
use crate::variant::{self, Variant};
use crate::{context, eco, layers, probe, report, ui};

#[derive(Args, Debug)]
pub struct Experiment {
    /// Only these variants (repeatable). Default: every `containers/*.Dockerfile`.
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
    /// Where base images come from: auto = the public image (local store or pull), else a local recipe;
    /// registry = only the public image; local = only local recipes.
    #[arg(long, value_enum, default_value_t = Policy::Auto)]
    pub base_source: Policy,
    /// Exit non-zero when a variant exceeds its size budget.
    #[arg(long)]
    pub check_budgets: bool,
    /// Build every image from scratch, so build times are real (steps that variants share are otherwise
    /// taken from Docker's cache).
    #[arg(long)]
    pub no_cache: bool,
    /// The budgets file [default: containers/budgets.toml].
    #[arg(long, value_name = "FILE")]
    pub budgets: Option<PathBuf>,
    /// Link speed for the modelled pull time (Mbit/s).
    #[arg(long, default_value_t = 100.0, value_parser = positive_f64)]
    pub bandwidth_mbit: f64,
    /// Requests in the bounded load run per variant.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
    /// Concurrent connections in the load run.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub concurrency: u64,
    /// Eco scenario: deploys per day.
    #[arg(long, default_value_t = 10.0, value_parser = non_negative_f64)]
    pub deploys_per_day: f64,
    /// Eco scenario: nodes that pull the image on each deploy.
    #[arg(long, default_value_t = 20.0, value_parser = non_negative_f64)]
    pub nodes: f64,
    /// Eco scenario: days the scenario lasts.
    #[arg(long, default_value_t = 365.0, value_parser = non_negative_f64)]
    pub days: f64,
    /// Eco scenario: grid carbon intensity (gCO2e/kWh). Default: IEA 2024 world average.
    #[arg(long, default_value_t = 445.0, value_parser = non_negative_f64)]
    pub grid_intensity: f64,
    /// Eco scenario: requests per day served by each running container.
    #[arg(long, default_value_t = 1_000_000.0, value_parser = non_negative_f64)]
    pub requests_per_day: f64,
    /// Directory for report.json, report.md, sizes.svg and build logs [default: target/eco-report].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

fn parse_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !v.is_finite() {
        return Err(format!("`{s}` is not a finite number"));
    }
    Ok(v)
}

pub fn positive_f64(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v <= 0.0 {
        return Err(format!("`{s}` must be greater than 0"));
    }
    Ok(v)
}

pub fn non_negative_f64(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v < 0.0 {
        return Err(format!("`{s}` must not be negative"));
    }
    Ok(v)
}

/// Everything a run needs once: the daemon, the staged context, the variants and where output goes.
pub struct Setup<'a> {
    pub docker: Docker<'a>,
    pub root: PathBuf,
    pub context: PathBuf,
    pub out: PathBuf,
    pub variants: Vec<Variant>,
}

/// Checks the machine, sweeps containers of interrupted runs, picks the variants and stages the context.
pub fn setup<'a>(
    sh: &'a xshell::Shell,
    all: &[Variant],
    requested: &[String],
    out: PathBuf,
) -> Result<Setup<'a>> {
    let root = crate::project_root();
    let variants = variant::select(all, requested)?;
    let docker = Docker::connect(sh)?;
    let swept = docker.sweep_stale()?;
    if swept > 0 {
        eprintln!("removed {swept} container(s) left by an interrupted run");
    }
    if out.exists() && !out.is_dir() {
        anyhow::bail!("--out {} exists and is not a directory", out.display());
    }
    std::fs::create_dir_all(out.join("logs"))
        .with_context(|| format!("creating {}", out.display()))?;
    let spinner = ui::spinner("staging the build context (cargo vendor)");
    let context = context::stage(sh, &root);
    spinner.finish_and_clear();
    Ok(Setup {
        docker,
        root,
        context: context?,
        out,
        variants,
    })
}

/// The outcome of building one variant: its report so far, and whether it can go on to be run.
pub struct Built {
    pub report: VariantReport,
    pub image: Option<crate::docker::ImageInfo>,
}

/// Resolves the variant's bases and builds its image under its stable tag.
pub fn build(
    setup: &Setup,
    resolver: &mut Resolver,
    variant: &Variant,
    no_cache: bool,
) -> Result<Built> {
    let mut report = VariantReport::new(&variant.name, variant.tag());
    let mut build_args = Vec::new();
    for base in &variant.bases {
        match resolver.resolve(base)? {
            Ok(provenance) => {
                if provenance.used != provenance.requested {
                    build_args.push((provenance.arg.clone(), provenance.used.clone()));
                }
                report.bases.push(provenance);
            }
            Err(reason) => {
                report.outcome = Outcome::Skipped {
                    reason: format!("base image unavailable: {reason}"),
                };
                return Ok(Built {
                    report,
                    image: None,
                });
            }
        }
    }

    let log_rel = format!("logs/{}.build.log", variant.name);
    let log = setup.out.join(&log_rel);
    let spinner = ui::spinner(&format!("{}: building", variant.name));
    let started = Instant::now();
    let request = BuildRequest {
        no_cache,
        context: &setup.context,
        dockerfile: &variant.dockerfile,
        tag: &report.tag,
        build_args: &build_args,
    };
    let result = setup.docker.build(&request, &log, |step| {
        spinner.set_message(format!("{}: {step}", variant.name))
    });
    spinner.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let steps = match result {
        Ok(steps) => steps,
        Err(err) => {
            report.outcome = Outcome::Failed {
                reason: format!("{err:#}"),
            };
            return Ok(Built {
                report,
                image: None,
            });
        }
    };
    report.build = Some(model::Build {
        seconds,
        cached_steps: steps.cached,
        steps: steps.total,
        log: log_rel,
    });
    let image = setup
        .docker
        .image_inspect(&report.tag)?
        .with_context(|| format!("{} missing after build", report.tag))?;
    Ok(Built {
        report,
        image: Some(image),
    })
}

/// How much of the runtime to measure.
pub struct RunPlan {
    /// `(requests, concurrency)` of the load run, or no load.
    pub load: Option<(u64, u64)>,
    /// Whether the image declares a `HEALTHCHECK`, which must then report the container healthy.
    pub healthcheck: bool,
}

/// Waits for Docker's own health check to decide. Engine 20.10 runs the first probe only after one
/// interval, so this can take that long.
fn health_check(docker: &Docker, id: &str, timeout: Duration) -> Result<model::Check> {
    let deadline = Instant::now() + timeout;
    let mut status = None;
    while Instant::now() < deadline {
        status = docker.state(id)?.health;
        if matches!(status.as_deref(), Some("healthy" | "unhealthy")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let passed = status.as_deref() == Some("healthy");
    Ok(model::Check {
        name: "HEALTHCHECK reports healthy".into(),
        passed,
        detail: if passed {
            String::new()
        } else {
            format!("health status {status:?} after {} s", timeout.as_secs())
        },
    })
}

/// Starts the image, waits for it, checks its answers, measures it, stops it and removes it.
pub fn run(
    docker: &Docker,
    tag: &str,
    plan: &RunPlan,
) -> Result<(model::Run, Option<model::Load>), String> {
    let started = Instant::now();
    let id = docker.run_detached(tag).map_err(|e| format!("{e:#}"))?;
    let container = ContainerGuard::new(docker, id);
    let fail = |what: &str, err: anyhow::Error| {
        let logs = docker.logs(&container.id);
        format!("{what}: {err:#}; container logs:\n{}", logs.trim_end())
    };
    let addr = docker
        .published_port(&container.id)
        .map_err(|e| fail("no published port", e))?;
    let ready =
        probe::wait_ready(addr, Duration::from_secs(30)).map_err(|e| fail("not ready", e))?;
    let cold_start_ms = (ready - started).as_secs_f64() * 1e3;
    let checks = probe::check(addr).map_err(|e| fail("checks could not run", e))?;

    // Memory settles for a moment after the first requests; the figure should be the idle one.
    std::thread::sleep(Duration::from_millis(500));
    let idle = docker.stats(&container.id).map_err(|e| fail("stats", e))?;
    let load = match plan.load {
        Some((requests, concurrency)) => {
            let result = probe::load(addr, requests, concurrency).map_err(|e| fail("load", e))?;
            let after = docker.stats(&container.id).map_err(|e| fail("stats", e))?;
            let ok = result.latencies.len() as f64;
            let ms =
                |p| probe::percentile(&result.latencies, p).map_or(0.0, |d| d.as_secs_f64() * 1e3);
            Some(model::Load {
                requests,
                concurrency,
                errors: result.errors,
                seconds: result.seconds,
                requests_per_second: ok / result.seconds,
                p50_ms: ms(50.0),
                p99_ms: ms(99.0),
                cpu_ms_per_1000: (after.cpu_ns.saturating_sub(idle.cpu_ns)) as f64
                    / 1e6
                    / (requests as f64 / 1000.0),
                memory_after_bytes: after.memory_bytes,
            })
        }
        None => None,
    };

    let mut checks = checks;
    if plan.healthcheck {
        let check = health_check(docker, &container.id, Duration::from_secs(40))
            .map_err(|e| fail("health status", e))?;
        checks.push(check);
    }

    let stopping = Instant::now();
    docker
        .stop(&container.id)
        .map_err(|e| fail("docker stop", e))?;
    let stop_ms = stopping.elapsed().as_secs_f64() * 1e3;
    let state = docker
        .state(&container.id)
        .map_err(|e| fail("inspect after stop", e))?;
    let run = model::Run {
        cold_start_ms,
        idle_memory_bytes: idle.memory_bytes,
        stop_ms,
        exit_code: state.exit_code,
        checks,
    };
    Ok((run, load))
}

/// Why a run's checks failed, or `None` when everything held.
pub fn verdict(run: &model::Run, load: Option<&model::Load>) -> Option<String> {
    let mut problems: Vec<String> = run
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{} ({})", c.name, c.detail))
        .collect();
    if run.exit_code != 0 {
        problems.push(format!(
            "exit code {} after docker stop (expected 0)",
            run.exit_code
        ));
    }
    if let Some(load) = load.filter(|l| l.errors > 0) {
        problems.push(format!(
            "{} of {} requests failed under load",
            load.errors, load.requests
        ));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

impl Experiment {
    /// The steps after a successful build: measure the image, check its budget, run and check it.
    fn measure_and_run(
        &self,
        setup: &Setup,
        report: &mut VariantReport,
        info: &crate::docker::ImageInfo,
        budget: Option<&variant::Budget>,
        cache: &layers::Cache,
        scenario: &model::Scenario,
    ) -> Result<()> {
        let spinner = ui::spinner(&format!("{}: measuring layers", report.name));
        let measured = measure_image(
            &setup.docker,
            &report.tag,
            info,
            cache,
            &setup.root,
            scenario,
        );
        spinner.finish_and_clear();
        let image = measured?;
        if let Some(budget) = budget {
            report.budget = Some(variant::check_budget(
                &report.name,
                budget,
                image.size_bytes,
                image.compressed_bytes,
            ));
        }
        report.image = Some(image);

        let spinner = ui::spinner(&format!("{}: running, checking, loading", report.name));
        let plan = RunPlan {
            load: Some((self.requests, self.concurrency)),
            healthcheck: info.healthcheck,
        };
        let ran = run(&setup.docker, &report.tag, &plan);
        spinner.finish_and_clear();
        match ran {
            Ok((run, load)) => {
                if let Some(reason) = verdict(&run, load.as_ref()) {
                    report.outcome = Outcome::Failed { reason };
                }
                report.run = Some(run);
                report.load = load;
            }
            Err(reason) => report.outcome = Outcome::Failed { reason },
        }
        Ok(())
    }

    pub fn run(self, sh: &xshell::Shell) -> Result<ExitCode> {
        let started_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let root = crate::project_root();
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| root.join("target/eco-report"));
        // Budgets are read before anything slow happens, so a typo in them fails at once.
        let budgets_path = self
            .budgets
            .clone()
            .unwrap_or_else(|| root.join("containers/budgets.toml"));
        let all = variant::discover(&root.join("containers"))?;
        let budgets = match std::fs::read_to_string(&budgets_path) {
            Ok(text) => variant::parse_budgets(&text, &all)
                .with_context(|| format!("in {}", budgets_path.display()))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && self.budgets.is_none() => {
                Default::default()
            }
            Err(err) => {
                return Err(err).with_context(|| format!("reading {}", budgets_path.display()));
            }
        };
        let setup = setup(sh, &all, &self.variants, out)?;
        let scenario = model::Scenario {
            deploys_per_day: self.deploys_per_day,
            nodes_per_deploy: self.nodes,
            days: self.days,
            grid_g_co2e_per_kwh: self.grid_intensity,
            bandwidth_mbit: self.bandwidth_mbit,
            requests_per_day: self.requests_per_day,
        };
        let cache = layers::Cache::new(setup.root.join("target/eco-docker/cache"))?;
        let logs = setup.out.join("logs");
        let mut resolver = Resolver::new(&setup.docker, self.base_source, &logs);
        let mut variants = Vec::new();
        for variant in &setup.variants {
            let Built { mut report, image } = build(&setup, &mut resolver, variant, self.no_cache)?;
            if let Some(info) = image {
                let budget = budgets.get(&variant.name);
                self.measure_and_run(&setup, &mut report, &info, budget, &cache, &scenario)?;
            }
            eprintln!("{}: {}", variant.name, outcome_line(&report.outcome));
            variants.push(report);
        }

        let baseline = variant::BASELINE.to_string();
        for v in &mut variants {
            v.eco = v
                .image
                .as_ref()
                .map(|image| eco::estimate(image, v.load.as_ref(), &scenario));
        }
        eco::fill_savings(&mut variants, &baseline);
        let host = model::Host {
            docker_server_version: setup.docker.server_version.clone(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: os_name(),
            revision: revision(sh),
        };
        let report = model::Report {
            schema_version: model::SCHEMA_VERSION,
            started_unix,
            host,
            scenario,
            baseline,
            variants,
            coefficients: eco::coefficients(&scenario),
        };
        report::write_all(&report, &setup.out)?;
        println!("{}", report::terminal_table(&report));
        println!("report: {}", setup.out.join("report.md").display());

        let failed = report
            .variants
            .iter()
            .any(|v| matches!(v.outcome, Outcome::Failed { .. }));
        let over_budget: Vec<&String> = report
            .variants
            .iter()
            .filter_map(|v| v.budget.as_ref())
            .flat_map(|b| &b.violations)
            .collect();
        for line in &over_budget {
            eprintln!(
                "{}: {line}",
                if self.check_budgets {
                    "error"
                } else {
                    "warning"
                }
            );
        }
        Ok(
            if failed || (self.check_budgets && !over_budget.is_empty()) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            },
        )
    }
}

fn measure_image(
    docker: &Docker,
    tag: &str,
    info: &crate::docker::ImageInfo,
    cache: &layers::Cache,
    root: &Path,
    scenario: &model::Scenario,
) -> Result<model::Image> {
    let footprint = layers::measure(docker, tag, info, cache)?;
    let unpack_seconds =
        layers::unpack_seconds(&footprint.layers, cache, &root.join("target/eco-docker"))?;
    Ok(model::Image {
        id: info.id.clone(),
        size_bytes: info.size,
        compressed_bytes: footprint.compressed_bytes,
        pull_seconds_modelled: eco::pull_seconds(
            footprint.compressed_bytes,
            scenario.bandwidth_mbit,
        ),
        layers: footprint.layers,
        efficiency: footprint.efficiency,
        unpack_seconds,
    })
}

pub fn outcome_line(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Passed => "passed".into(),
        Outcome::Failed { reason } => format!("FAILED: {reason}"),
        Outcome::Skipped { reason } => format!("skipped: {reason}"),
    }
}

/// The commit of this checkout, so a report can be traced to the code that produced it.
fn revision(sh: &xshell::Shell) -> String {
    let Ok(commit) = xshell::cmd!(sh, "git rev-parse --short=12 HEAD")
        .quiet()
        .ignore_stderr()
        .read()
    else {
        return "unknown".into();
    };
    let dirty = xshell::cmd!(sh, "git status --porcelain --untracked-files=no")
        .quiet()
        .ignore_stderr()
        .read()
        .map_or(true, |changes| !changes.trim().is_empty());
    if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    }
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(exit_code: i64, failing: &[&str]) -> model::Run {
        model::Run {
            cold_start_ms: 1.0,
            idle_memory_bytes: 1,
            stop_ms: 1.0,
            exit_code,
            checks: ["a", "b"]
                .iter()
                .map(|n| model::Check {
                    name: n.to_string(),
                    passed: !failing.contains(n),
                    detail: "x".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn verdict_names_every_problem() {
        assert_eq!(verdict(&run_with(0, &[]), None), None);
        assert_eq!(
            verdict(&run_with(137, &["b"]), None).unwrap(),
            "b (x); exit code 137 after docker stop (expected 0)"
        );
    }

    #[test]
    fn numeric_flags_reject_nonsense() {
        assert_eq!(positive_f64("0").unwrap_err(), "`0` must be greater than 0");
        assert_eq!(
            non_negative_f64("-1").unwrap_err(),
            "`-1` must not be negative"
        );
        assert_eq!(
            non_negative_f64("NaN").unwrap_err(),
            "`NaN` is not a finite number"
        );
        assert_eq!(positive_f64("fast").unwrap_err(), "`fast` is not a number");
        assert_eq!(positive_f64("2.5").unwrap(), 2.5);
    }
}
