//! `cargo xtask experiment`: variant → base → build → measure → run → check → report, for every variant.

use std::process::ExitCode;

use clap::Args;

#[derive(Args, Debug)]
pub struct Experiment {
    /// Only these variants (repeatable). Default: every `containers/*.Dockerfile`.
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
    /// Where base images come from: local store or pull, falling back to a local recipe (auto); only the
    /// registry (registry); only local recipes (local).
    #[arg(long, value_enum, default_value_t = crate::base::Policy::Auto)]
    pub base_source: crate::base::Policy,
    /// Fail when a variant exceeds its budget in containers/budgets.toml.
    #[arg(long)]
    pub check_budgets: bool,
    /// Link speed for the modelled pull time (Mbit/s).
    #[arg(long, default_value_t = 100.0, value_parser = positive_f64)]
    pub bandwidth_mbit: f64,
    /// Requests in the bounded load run per variant.
    #[arg(long, default_value_t = 5000)]
    pub requests: u64,
    /// Concurrent connections in the load run.
    #[arg(long, default_value_t = 16)]
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
    /// Directory for report.json, report.md, sizes.svg and build logs.
    #[arg(long, default_value = "target/eco-report")]
    pub out: std::path::PathBuf,
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

impl Experiment {
    pub fn run(self, _sh: &xshell::Shell) -> anyhow::Result<ExitCode> {
        anyhow::bail!("not yet implemented")
    }
}
