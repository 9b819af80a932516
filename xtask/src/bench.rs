//! `cargo xtask bench`: checks the speed and size targets with measurements, never with timed unit tests.
//!
//! - service: the static binary's size, its idle RSS, SIGTERM → exit time, and its throughput against a bare
//!   hyper hello-world (`service/examples/bare_hello.rs`) in alternating rounds on the same machine;
//! - layers: measuring an image's layers with a cold cache and a warm one, against `docker save | gzip`.
//!
//! Each figure is a median over rounds; the verdicts compare ratios measured in the same run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;
use xshell::{Shell, cmd};

use crate::docker::Docker;
use crate::layers;
use crate::probe::{self, median};

#[derive(Args, Debug)]
pub struct Bench {
    /// Run only one part.
    #[arg(long, value_enum)]
    pub only: Option<Part>,
    /// Rounds per measurement; medians are reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Requests per throughput round.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
    /// Concurrent connections per throughput round.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub concurrency: u64,
    /// The image whose layers are measured cold and warm (build it with `cargo xtask experiment`).
    #[arg(long, default_value = "eco-docker/standard:latest")]
    pub image: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    Service,
    Layers,
}

/// One measured figure against its target.
#[derive(Debug, Serialize)]
struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
    /// `None` for figures that only inform (the two throughputs behind a ratio, say).
    target: Option<String>,
    met: Option<bool>,
}

impl Figure {
    fn info(name: impl Into<String>, value: f64, unit: &'static str) -> Figure {
        Figure {
            name: name.into(),
            value,
            unit,
            target: None,
            met: None,
        }
    }

    fn target(
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
        target: &str,
        met: bool,
    ) -> Figure {
        Figure {
            name: name.into(),
            value,
            unit,
            target: Some(target.into()),
            met: Some(met),
        }
    }
}

impl Bench {
    pub fn run(self, sh: &Shell) -> Result<ExitCode> {
        let mut figures = Vec::new();
        if self.only != Some(Part::Layers) {
            figures.extend(self.service(sh)?);
        }
        if self.only != Some(Part::Service) {
            figures.extend(self.layers(sh)?);
        }
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        table.set_header(["figure", "median", "target", "met"]);
        for f in &figures {
            table.add_row([
                f.name.clone(),
                format!("{:.3} {}", f.value, f.unit),
                f.target.clone().unwrap_or_default(),
                f.met.map_or("", yes_no).into(),
            ]);
        }
        println!("{table}");
        let out = crate::project_root().join("target/eco-bench");
        std::fs::create_dir_all(&out)?;
        let json = out.join("bench.json");
        std::fs::write(&json, serde_json::to_vec_pretty(&figures)?)?;
        println!("written: {}", json.display());
        let missed: Vec<&str> = figures
            .iter()
            .filter(|f| f.met == Some(false))
            .map(|f| f.name.as_str())
            .collect();
        if !missed.is_empty() {
            eprintln!("error: targets missed: {}", missed.join(", "));
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    }

    fn service(&self, sh: &Shell) -> Result<Vec<Figure>> {
        let (service, bare) = build_static(sh)?;
        let mut figures = Vec::new();

        let size = std::fs::metadata(&service)?.len() as f64 / 1e6;
        figures.push(Figure::target(
            "static binary size",
            size,
            "MB",
            "≤ 1.5 MB",
            size <= 1.5,
        ));

        let mut rss = Vec::new();
        let mut stop = Vec::new();
        for _ in 0..self.rounds {
            let (mut child, addr) = spawn(&service)?;
            probe::wait_ready(addr, Duration::from_secs(10))?;
            // The figure is the idle one: let the runtime settle after the readiness request.
            std::thread::sleep(Duration::from_millis(200));
            rss.push(vm_rss_kib(child.id())? as f64 / 1024.0);
            let t = Instant::now();
            let pid = child.id().to_string();
            cmd!(sh, "kill -TERM {pid}").quiet().run()?;
            let status = wait_with_timeout(&mut child, Duration::from_secs(15))?;
            stop.push(t.elapsed().as_secs_f64());
            if status.code() != Some(0) {
                bail!("eco-service exited with {status} after SIGTERM (expected exit code 0)");
            }
        }
        let rss = median(&mut rss);
        figures.push(Figure::target(
            "idle RSS",
            rss,
            "MiB",
            "≤ 1 MiB",
            rss <= 1.0,
        ));
        let stop = median(&mut stop);
        figures.push(Figure::target(
            "SIGTERM → exit 0",
            stop,
            "s",
            "≤ 0.5 s",
            stop <= 0.5,
        ));

        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..self.rounds {
            ours.push(self.throughput(&service)?);
            theirs.push(self.throughput(&bare)?);
        }
        let (ours, theirs) = (median(&mut ours), median(&mut theirs));
        figures.push(Figure::info("eco-service req/s", ours, "req/s"));
        figures.push(Figure::info("bare hyper req/s", theirs, "req/s"));
        let ratio = ours / theirs;
        figures.push(Figure::target(
            "throughput vs bare hyper",
            ratio,
            "x",
            "≥ 0.9x",
            ratio >= 0.9,
        ));
        Ok(figures)
    }

    fn throughput(&self, binary: &Path) -> Result<f64> {
        let (mut child, addr) = spawn(binary)?;
        let result = probe::wait_ready(addr, Duration::from_secs(10))
            .and_then(|_| probe::load(addr, self.requests, self.concurrency));
        let _ = child.kill();
        let _ = child.wait();
        let result = result?;
        if result.errors > 0 {
            bail!(
                "{} of {} requests to {} failed",
                result.errors,
                self.requests,
                binary.display()
            );
        }
        Ok(result.latencies.len() as f64 / result.seconds)
    }

    fn layers(&self, sh: &Shell) -> Result<Vec<Figure>> {
        let docker = Docker::connect(sh)?;
        let image = &self.image;
        let info = docker.image_inspect(image)?.with_context(|| {
            format!("{image} is not in the local image store: run `cargo xtask experiment` first")
        })?;

        let t = Instant::now();
        duct::cmd!("docker", "save", image)
            .pipe(duct::cmd!("gzip", "-6"))
            .stdout_null()
            .run()
            .context("docker save | gzip -6")?;
        let naive = t.elapsed().as_secs_f64();

        let scratch = crate::project_root().join("target/eco-bench");
        std::fs::create_dir_all(&scratch)?;
        let dir = tempfile::Builder::new()
            .prefix("layer-cache-")
            .tempdir_in(&scratch)?;
        let cache = layers::Cache::new(dir.path().to_path_buf())?;
        let t = Instant::now();
        let cold = layers::measure(&docker, image, &info, &cache)?;
        let cold_s = t.elapsed().as_secs_f64();
        let mut warm = Vec::new();
        for _ in 0..self.rounds {
            let t = Instant::now();
            let again = layers::measure(&docker, image, &info, &cache)?;
            warm.push(t.elapsed().as_secs_f64());
            if again.compressed_now != 0 || again.compressed_bytes != cold.compressed_bytes {
                bail!(
                    "the warm cache recompressed {} layer(s) or changed the size",
                    again.compressed_now
                );
            }
        }
        let warm = median(&mut warm);
        let speedup = naive / warm;
        Ok(vec![
            Figure::info(format!("docker save | gzip -6 ({image})"), naive, "s"),
            Figure::info("layer measurement, cold cache", cold_s, "s"),
            Figure::info("layer measurement, warm cache", warm, "s"),
            Figure::target(
                "warm speed-up over docker save | gzip",
                speedup,
                "x",
                "≥ 10x",
                speedup >= 10.0,
            ),
        ])
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

/// Builds the static service and the bare hyper baseline with the same release profile.
fn build_static(sh: &Shell) -> Result<(PathBuf, PathBuf)> {
    const TARGET: &str = "x86_64-unknown-linux-gnu";
    let spinner = crate::ui::spinner("building the static service and the bare hyper baseline");
    // `--target` keeps RUSTFLAGS off build scripts and proc-macros, which cannot be linked statically.
    let built = cmd!(sh, "cargo build --quiet --release --package eco-service --bin eco-service --example bare_hello --target {TARGET}")
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .quiet()
        .run();
    spinner.finish_and_clear();
    built.context("building the static binaries")?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::project_root().join("target"), PathBuf::from);
    let release = target_dir.join(TARGET).join("release");
    Ok((
        release.join("eco-service"),
        release.join("examples/bare_hello"),
    ))
}

/// Starts a server binary on a free loopback port.
fn spawn(binary: &Path) -> Result<(Child, SocketAddr)> {
    // Binding port 0 and releasing it leaves a tiny window for another process to take the port; on a
    // benchmark machine that is an acceptable price for not parsing each server's start line.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(binary)
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    Ok((child, SocketAddr::from(([127, 0, 0, 1], port))))
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the process did not exit within {timeout:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Resident set size of a process, from `/proc/PID/status` (KiB).
fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).context("no VmRSS line in /proc/PID/status")
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        assert_eq!(
            parse_vm_rss("Name:\teco-service\nVmRSS:\t     812 kB\nThreads:\t1\n"),
            Some(812)
        );
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }
}
