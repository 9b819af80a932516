//! The report's data model: every raw measurement and every derived figure of one experiment run.
//!
//! This is what flows from `measure`/`run` into `eco` and `report`. It is plain data: nothing here talks to
//! Docker or formats text. `report.json` is this structure serialized, so changing a field's meaning means
//! bumping [`SCHEMA_VERSION`].

use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    pub host: Host,
    pub scenario: Scenario,
    /// The variant every ratio and saving is computed against (`standard`).
    pub baseline: String,
    pub variants: Vec<VariantReport>,
    /// Every coefficient the eco model used, with its source.
    pub coefficients: Vec<Coefficient>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Host {
    pub docker_server_version: String,
    pub cpus: usize,
    pub os: String,
    /// The eco-docker commit that ran (`-dirty` when the work tree had changes), or `unknown`.
    pub revision: String,
}

/// The deployment scenario the eco model prices, set by `cargo xtask experiment` flags.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub deploys_per_day: f64,
    pub nodes_per_deploy: f64,
    pub days: f64,
    pub grid_g_co2e_per_kwh: f64,
    pub bandwidth_mbit: f64,
    /// Requests served per day by one running container, for the compute term.
    pub requests_per_day: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantReport {
    pub name: String,
    /// The local tag the image keeps after the run, e.g. `eco-docker/static:latest`.
    pub tag: String,
    pub outcome: Outcome,
    /// What each base image really was: never a stand-in presented as the public image.
    pub bases: Vec<BaseProvenance>,
    pub build: Option<Build>,
    pub image: Option<Image>,
    pub run: Option<Run>,
    pub load: Option<Load>,
    pub eco: Option<EcoEstimate>,
    pub budget: Option<BudgetCheck>,
}

impl VariantReport {
    /// A variant about to be built: nothing measured yet, and nothing failed yet.
    pub fn new(name: &str, tag: String) -> VariantReport {
        VariantReport {
            name: name.to_string(),
            tag,
            outcome: Outcome::Passed,
            bases: Vec::new(),
            build: None,
            image: None,
            run: None,
            load: None,
            eco: None,
            budget: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed { reason: String },
    Skipped { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseProvenance {
    /// The `ARG` in the Dockerfile, e.g. `RUST_IMAGE`.
    pub arg: String,
    /// The public reference the Dockerfile asks for, e.g. `rust:1-trixie`.
    pub requested: String,
    /// The image that was actually used (the same reference, or a local stand-in tag).
    pub used: String,
    pub source: BaseSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BaseSource {
    /// `FROM scratch`: nothing to resolve.
    Scratch,
    /// The public image, already present in the local image store.
    Local {
        image_id: String,
        repo_digest: Option<String>,
    },
    /// The public image, pulled for this run.
    Pulled {
        image_id: String,
        repo_digest: Option<String>,
    },
    /// A stand-in built from Debian packages with mmdebstrap.
    Recipe {
        recipe: String,
        description: String,
        image_id: String,
        toolchain: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Build {
    pub seconds: f64,
    /// Build steps Docker took from its cache instead of running them: a cached build's time is not a
    /// build time. `--no-cache` makes it 0.
    pub cached_steps: u32,
    pub steps: u32,
    /// The full `docker build` output, relative to the report directory.
    pub log: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    /// Uncompressed size as `docker image inspect` reports it (bytes).
    pub size_bytes: u64,
    /// Sum of the gzip-compressed layers: what a registry stores and a node pulls (bytes).
    pub compressed_bytes: u64,
    pub layers: Vec<Layer>,
    pub efficiency: Efficiency,
    /// Measured: seconds to gunzip and untar every layer into an empty directory.
    pub unpack_seconds: f64,
    /// Modelled: seconds to pull `compressed_bytes` at the scenario's bandwidth.
    pub pull_seconds_modelled: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Layer {
    /// `sha256:…` of the uncompressed layer tar (Docker's diff ID).
    pub diff_id: String,
    /// Size of the uncompressed layer tar (bytes).
    pub tar_bytes: u64,
    /// Size of the layer's contents: the sum of its regular files' sizes (bytes).
    pub size_bytes: u64,
    pub compressed_bytes: u64,
    /// Regular files, symlinks and hard links in the layer (directories not counted).
    pub file_count: u64,
    pub created_by: String,
}

/// dive's image efficiency figures, corrected: see `dive.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Efficiency {
    /// 1.0 when no byte is stored twice or deleted later.
    pub score: f64,
    /// Bytes stored in some layer but not visible in the final filesystem.
    pub wasted_bytes: u64,
    /// `wasted_bytes` over the bytes of every layer above the first; 0 for a one-layer image.
    pub wasted_user_fraction: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// `docker run` → first `200 OK` on `GET /` (milliseconds).
    pub cold_start_ms: f64,
    pub idle_memory_bytes: u64,
    /// `docker stop` duration (milliseconds) and the container's exit code.
    pub stop_ms: f64,
    pub exit_code: i64,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// What was expected and what came back, when it failed.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Load {
    pub requests: u64,
    pub concurrency: u64,
    pub errors: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU time the container spent per 1,000 requests, from its cgroup (milliseconds).
    pub cpu_ms_per_1000: f64,
    pub memory_after_bytes: u64,
}

/// Low and high ends of an estimate: the published coefficients differ by ~50x.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Range {
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EcoEstimate {
    pub transfer_kwh: Range,
    pub storage_kwh: Range,
    pub compute_kwh: Range,
    pub total_kwh: Range,
    pub total_g_co2e: Range,
    /// Savings against the baseline variant (positive means this variant uses less); None for the baseline.
    pub savings_kwh_vs_baseline: Option<Range>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coefficient {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetCheck {
    pub max_size_bytes: Option<u64>,
    pub max_compressed_bytes: Option<u64>,
    /// One line per exceeded limit, naming the variant, the limit and the measured size.
    pub violations: Vec<String>,
}
