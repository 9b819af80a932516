//! Everything that talks to Docker: the `docker` CLI for images and containers, and the Engine API on the
//! daemon's Unix socket for the one thing the CLI cannot give (a container's cumulative CPU time).
//!
//! Parsing of Docker's JSON is done by pure functions below so it can be unit-tested without a daemon.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use xshell::{Shell, cmd};

/// Every container the xtask starts carries this label; nothing without it is ever touched.
pub const LABEL: &str = "io.eco-docker.managed";
/// The PID of the xtask that started the container, so a sweep removes only containers of dead runs.
pub const OWNER_LABEL: &str = "io.eco-docker.owner-pid";

pub struct Docker<'a> {
    sh: &'a Shell,
    pub server_version: String,
    api_socket: PathBuf,
}

/// What `docker image inspect` tells about one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub id: String,
    pub repo_digests: Vec<String>,
    pub size: u64,
    /// Diff IDs of the layers, bottom first.
    pub layers: Vec<String>,
    /// Whether the image declares a `HEALTHCHECK`.
    pub healthcheck: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Cumulative CPU time of the container's cgroup (nanoseconds).
    pub cpu_ns: u64,
    /// Memory in use without the inactive page cache, as `docker stats` shows it (bytes).
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerState {
    pub running: bool,
    pub exit_code: i64,
    pub health: Option<String>,
}

impl<'a> Docker<'a> {
    /// Checks that the CLI exists and the daemon answers, with one clear error for each.
    pub fn connect(sh: &'a Shell) -> Result<Docker<'a>> {
        if which("docker").is_none() {
            bail!(
                "the `docker` CLI is not on PATH: install Docker (https://docs.docker.com/engine/install/)"
            );
        }
        let format = "{{json .Server.Version}}";
        let out = cmd!(sh, "docker version --format {format}")
            .quiet()
            .ignore_status()
            .output()?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no answer");
            bail!(
                "the Docker daemon does not answer ({}): start it, e.g. `sudo systemctl start docker`",
                first.trim()
            );
        }
        let server_version: String =
            serde_json::from_slice(&out.stdout).context("parsing `docker version`")?;
        let api_socket = api_socket(sh)?;
        Ok(Docker {
            sh,
            server_version,
            api_socket,
        })
    }

    /// `None` when the image is not in the local store.
    pub fn image_inspect(&self, reference: &str) -> Result<Option<ImageInfo>> {
        let format = "{{json .}}";
        let out = cmd!(
            self.sh,
            "docker image inspect --format {format} {reference}"
        )
        .quiet()
        .ignore_status()
        .output()?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("No such image") || stderr.contains("No such object") {
                return Ok(None);
            }
            bail!("docker image inspect {reference}: {}", stderr.trim());
        }
        parse_image_inspect(&String::from_utf8_lossy(&out.stdout)).map(Some)
    }

    /// Pulls quietly; the error carries Docker's own first line (e.g. no route to the registry).
    pub fn pull(&self, reference: &str) -> Result<()> {
        let out = cmd!(self.sh, "docker pull --quiet {reference}")
            .quiet()
            .ignore_status()
            .output()?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            bail!("docker pull {reference} failed: {}", first_line(&stderr));
        }
        Ok(())
    }

    /// `docker build`, with the full output going to `log` and each `Step N/M` line handed to `on_step`.
    pub fn build(
        &self,
        req: &BuildRequest<'_>,
        log: &Path,
        mut on_step: impl FnMut(&str),
    ) -> Result<BuildSteps> {
        let mut args: Vec<String> = vec![
            "build".into(),
            "--force-rm".into(),
            "--tag".into(),
            req.tag.into(),
        ];
        if req.no_cache {
            args.push("--no-cache".into());
        }
        args.extend(["--file".into(), req.dockerfile.display().to_string()]);
        for (k, v) in req.build_args {
            args.extend(["--build-arg".into(), format!("{k}={v}")]);
        }
        args.push(req.context.display().to_string());
        let mut log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        writeln!(log_file, "$ docker {}", args.join(" "))?;
        let reader = duct::cmd("docker", &args)
            .env("DOCKER_BUILDKIT", "0")
            .stderr_to_stdout()
            .unchecked()
            .reader()
            .context("starting docker build")?;
        let mut lines = BufReader::new(&reader);
        let mut line = Vec::new();
        let mut steps = BuildSteps::default();
        loop {
            line.clear();
            if lines.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            log_file.write_all(&line)?;
            let text = String::from_utf8_lossy(&line);
            if text.starts_with("Step ") {
                steps.total += 1;
                on_step(text.trim_end());
            } else if text.trim() == "---> Using cache" {
                steps.cached += 1;
            }
        }
        let status = reader
            .try_wait()?
            .ok_or_else(|| anyhow!("docker build did not finish"))?;
        if !status.status.success() {
            bail!(
                "docker build failed (exit {}); see {}",
                status.status.code().unwrap_or(-1),
                log.display()
            );
        }
        Ok(steps)
    }

    /// Starts a labelled container publishing 5000/tcp on a random loopback port.
    pub fn run_detached(&self, image: &str) -> Result<String> {
        let labels = labels();
        let id = cmd!(
            self.sh,
            "docker run --detach {labels...} --publish 127.0.0.1::5000 {image}"
        )
        .quiet()
        .read()
        .with_context(|| format!("docker run {image}"))?;
        Ok(id.trim().to_string())
    }

    /// Runs `command` in a labelled, network-less container that is removed when it exits; its stdout.
    pub fn run_once(&self, image: &str, command: &[&str]) -> Result<String> {
        let labels = labels();
        let out = cmd!(
            self.sh,
            "docker run --rm {labels...} --network none {image} {command...}"
        )
        .quiet()
        .read()
        .with_context(|| format!("docker run {image} {}", command.join(" ")))?;
        Ok(out.trim().to_string())
    }

    pub fn published_port(&self, id: &str) -> Result<SocketAddr> {
        let out = cmd!(self.sh, "docker port {id} 5000/tcp").quiet().read()?;
        parse_port(&out)
    }

    pub fn state(&self, id: &str) -> Result<ContainerState> {
        let format = "{{json .State}}";
        let out = cmd!(self.sh, "docker container inspect --format {format} {id}")
            .quiet()
            .read()?;
        parse_state(&out)
    }

    pub fn stop(&self, id: &str) -> Result<()> {
        cmd!(self.sh, "docker stop --time 10 {id}")
            .quiet()
            .ignore_stdout()
            .run()?;
        Ok(())
    }

    pub fn logs(&self, id: &str) -> String {
        match cmd!(self.sh, "docker logs --tail 50 {id}")
            .quiet()
            .ignore_status()
            .output()
        {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(err) => format!("(docker logs failed: {err})"),
        }
    }

    pub fn remove(&self, id: &str) -> Result<()> {
        cmd!(self.sh, "docker rm --force --volumes {id}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()?;
        Ok(())
    }

    /// Removes containers that earlier, interrupted runs left behind: labelled by us, owner process gone.
    pub fn sweep_stale(&self) -> Result<usize> {
        let filter = format!("label={LABEL}=true");
        let format = "{{json .}}";
        let out = cmd!(
            self.sh,
            "docker ps --all --filter {filter} --format {format}"
        )
        .quiet()
        .read()?;
        let mut removed = 0;
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            let row: PsRow = serde_json::from_str(line).context("parsing `docker ps`")?;
            let owner = label_value(&row.labels, OWNER_LABEL).and_then(|p| p.parse::<u32>().ok());
            if owner.is_some_and(process_alive) {
                continue;
            }
            self.remove(&row.id)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// `docker save` into a file.
    pub fn save(&self, image: &str, to: &Path) -> Result<()> {
        duct::cmd!("docker", "save", image)
            .stdout_path(to)
            .stderr_capture()
            .run()
            .with_context(|| format!("docker save {image}"))?;
        Ok(())
    }

    /// The Engine API's one-shot stats for a running container.
    pub fn stats(&self, id: &str) -> Result<Stats> {
        let body = engine_get(
            &self.api_socket,
            &format!("/containers/{id}/stats?stream=false"),
        )?;
        parse_stats(&body)
    }
}

/// Counts from the legacy builder's output.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BuildSteps {
    pub total: u32,
    pub cached: u32,
}

pub struct BuildRequest<'p> {
    pub no_cache: bool,
    pub context: &'p Path,
    pub dockerfile: &'p Path,
    pub tag: &'p str,
    pub build_args: &'p [(String, String)],
}

/// Removes every container this process started. For the Ctrl-C handler: an interrupted process runs
/// no destructors, so the guards below cannot do it.
pub fn remove_own_containers() {
    let filter = format!("label={OWNER_LABEL}={}", std::process::id());
    let listed = duct::cmd!("docker", "ps", "--all", "--quiet", "--filter", filter)
        .stderr_null()
        .read();
    for id in listed.unwrap_or_default().split_whitespace() {
        let _ = duct::cmd!("docker", "rm", "--force", "--volumes", id)
            .stdout_null()
            .stderr_null()
            .run();
    }
}

/// Removes its container when dropped, so no error path can leave one behind.
pub struct ContainerGuard<'d, 'a> {
    docker: &'d Docker<'a>,
    pub id: String,
}

impl<'d, 'a> ContainerGuard<'d, 'a> {
    pub fn new(docker: &'d Docker<'a>, id: String) -> Self {
        ContainerGuard { docker, id }
    }
}

impl Drop for ContainerGuard<'_, '_> {
    fn drop(&mut self) {
        if let Err(err) = self.docker.remove(&self.id) {
            eprintln!(
                "warning: could not remove container {}: {err:#}",
                &self.id[..12.min(self.id.len())]
            );
        }
    }
}

/// The labels that make a container ours: managed by eco-docker, owned by this process.
fn labels() -> [String; 4] {
    [
        "--label".into(),
        format!("{LABEL}=true"),
        "--label".into(),
        format!("{OWNER_LABEL}={}", std::process::id()),
    ]
}

pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn first_line(s: &str) -> &str {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output")
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The daemon's Unix socket: `DOCKER_HOST` if set, else the current CLI context's endpoint.
fn api_socket(sh: &Shell) -> Result<PathBuf> {
    let host = match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => host,
        _ => {
            let format = "{{json .Endpoints.docker.Host}}";
            let out = cmd!(sh, "docker context inspect --format {format}")
                .quiet()
                .ignore_stderr()
                .read()
                .unwrap_or_default();
            serde_json::from_str::<String>(out.trim())
                .unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
        }
    };
    match host.strip_prefix("unix://") {
        Some(path) => Ok(PathBuf::from(path)),
        None => bail!(
            "the Docker endpoint {host} is not a Unix socket: container CPU time needs the Engine API on one"
        ),
    }
}

/// One GET against the Engine API over its Unix socket, returning the body.
fn engine_get(socket: &Path, path: &str) -> Result<String> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| {
                format!(
                    "connecting to the Docker Engine API at {}",
                    socket.display()
                )
            })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header("host", "docker")
            .body(Empty::<&'static [u8]>::new())?;
        let res = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req)).await??;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            bail!("Engine API GET {path}: {status}: {}", body.trim());
        }
        Ok(body)
    })
}

#[derive(Deserialize)]
struct PsRow {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Labels")]
    labels: String,
}

/// `docker ps --format {{json .}}` gives labels as one `k=v,k=v` string.
fn label_value<'s>(labels: &'s str, key: &str) -> Option<&'s str> {
    labels
        .split(',')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

pub fn parse_image_inspect(json: &str) -> Result<ImageInfo> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Raw {
        id: String,
        #[serde(default)]
        repo_digests: Option<Vec<String>>,
        size: u64,
        #[serde(rename = "RootFS")]
        root_fs: RootFs,
        #[serde(default)]
        config: Option<Config>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct RootFs {
        #[serde(default)]
        layers: Vec<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Config {
        #[serde(default)]
        healthcheck: Option<Healthcheck>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Healthcheck {
        #[serde(default)]
        test: Vec<String>,
    }
    let raw: Raw =
        serde_json::from_str(json.trim()).context("parsing `docker image inspect` output")?;
    Ok(ImageInfo {
        id: raw.id,
        repo_digests: raw.repo_digests.unwrap_or_default(),
        size: raw.size,
        layers: raw.root_fs.layers,
        // `HEALTHCHECK NONE` is stored as the test `["NONE"]`.
        healthcheck: raw
            .config
            .and_then(|c| c.healthcheck)
            .is_some_and(|h| h.test.first().is_some_and(|t| t != "NONE")),
    })
}

pub fn parse_port(output: &str) -> Result<SocketAddr> {
    // Newer CLIs print one line per address family (`127.0.0.1:49153` and maybe `[::]:49153`).
    output
        .lines()
        .filter_map(|l| l.trim().parse::<SocketAddr>().ok())
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| {
            anyhow!(
                "no IPv4 address in `docker port` output: {:?}",
                output.trim()
            )
        })
}

pub fn parse_state(json: &str) -> Result<ContainerState> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Raw {
        running: bool,
        exit_code: i64,
        health: Option<Health>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Health {
        status: String,
    }
    let raw: Raw = serde_json::from_str(json.trim()).context("parsing container state")?;
    Ok(ContainerState {
        running: raw.running,
        exit_code: raw.exit_code,
        health: raw.health.map(|h| h.status),
    })
}

/// Reads CPU and memory from `GET /containers/ID/stats?stream=false`, the same way for cgroup v1 and v2.
pub fn parse_stats(json: &str) -> Result<Stats> {
    let v: serde_json::Value = serde_json::from_str(json).context("parsing Engine API stats")?;
    let cpu_ns = v["cpu_stats"]["cpu_usage"]["total_usage"]
        .as_u64()
        .ok_or_else(|| anyhow!("Engine API stats have no cpu_stats.cpu_usage.total_usage"))?;
    let usage = v["memory_stats"]["usage"]
        .as_u64()
        .ok_or_else(|| anyhow!("Engine API stats have no memory_stats.usage"))?;
    // `docker stats` subtracts the inactive page cache: `total_inactive_file` on cgroup v1,
    // `inactive_file` on v2. Doing the same keeps our figure equal to what users see.
    let stats = &v["memory_stats"]["stats"];
    let inactive = stats["total_inactive_file"]
        .as_u64()
        .or_else(|| stats["inactive_file"].as_u64())
        .unwrap_or(0);
    Ok(Stats {
        cpu_ns,
        memory_bytes: usage.saturating_sub(inactive),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_inspect_reads_id_size_layers_and_digests() {
        let json = r#"{"Id":"sha256:abc","RepoTags":["x:latest"],"RepoDigests":["rust@sha256:def"],"Size":1234,
            "RootFS":{"Type":"layers","Layers":["sha256:l1","sha256:l2"]}}"#;
        let info = parse_image_inspect(json).unwrap();
        assert_eq!(
            info,
            ImageInfo {
                id: "sha256:abc".into(),
                repo_digests: vec!["rust@sha256:def".into()],
                size: 1234,
                layers: vec!["sha256:l1".into(), "sha256:l2".into()],
                healthcheck: false,
            }
        );
    }

    #[test]
    fn image_inspect_sees_a_healthcheck_but_not_healthcheck_none() {
        let with = r#"{"Id":"i","Size":1,"RootFS":{},"Config":{"Healthcheck":{"Test":["CMD","/eco-service","--health-check"]}}}"#;
        assert!(parse_image_inspect(with).unwrap().healthcheck);
        let none = r#"{"Id":"i","Size":1,"RootFS":{},"Config":{"Healthcheck":{"Test":["NONE"]}}}"#;
        assert!(!parse_image_inspect(none).unwrap().healthcheck);
        let absent = r#"{"Id":"i","Size":1,"RootFS":{},"Config":{"Healthcheck":null}}"#;
        assert!(!parse_image_inspect(absent).unwrap().healthcheck);
    }

    #[test]
    fn image_inspect_accepts_null_digests_and_no_layers() {
        let json = r#"{"Id":"sha256:abc","RepoDigests":null,"Size":0,"RootFS":{"Type":"layers"}}"#;
        let info = parse_image_inspect(json).unwrap();
        assert!(info.repo_digests.is_empty());
        assert!(info.layers.is_empty());
    }

    #[test]
    fn image_inspect_rejects_garbage_with_context() {
        let err = parse_image_inspect("[]").unwrap_err();
        assert!(format!("{err:#}").starts_with("parsing `docker image inspect` output"));
    }

    #[test]
    fn port_prefers_ipv4_line() {
        assert_eq!(
            parse_port("127.0.0.1:49153\n[::1]:49153\n").unwrap(),
            "127.0.0.1:49153".parse().unwrap()
        );
        assert_eq!(
            parse_port("[::]:1\n0.0.0.0:2\n").unwrap(),
            "0.0.0.0:2".parse().unwrap()
        );
        assert!(parse_port("").is_err());
    }

    #[test]
    fn state_reads_exit_code_and_health() {
        let s = parse_state(
            r#"{"Status":"exited","Running":false,"ExitCode":0,"Health":{"Status":"healthy"}}"#,
        )
        .unwrap();
        assert_eq!(
            s,
            ContainerState {
                running: false,
                exit_code: 0,
                health: Some("healthy".into())
            }
        );
        let s = parse_state(r#"{"Running":true,"ExitCode":137}"#).unwrap();
        assert_eq!(s.health, None);
        assert_eq!(s.exit_code, 137);
    }

    #[test]
    fn stats_subtract_inactive_file_on_cgroup_v1_and_v2() {
        let v1 = r#"{"cpu_stats":{"cpu_usage":{"total_usage":5000}},
            "memory_stats":{"usage":3000000,"stats":{"total_inactive_file":1000000,"inactive_file":7}}}"#;
        assert_eq!(
            parse_stats(v1).unwrap(),
            Stats {
                cpu_ns: 5000,
                memory_bytes: 2000000
            }
        );
        let v2 = r#"{"cpu_stats":{"cpu_usage":{"total_usage":1}},"memory_stats":{"usage":500,"stats":{"inactive_file":200}}}"#;
        assert_eq!(
            parse_stats(v2).unwrap(),
            Stats {
                cpu_ns: 1,
                memory_bytes: 300
            }
        );
    }

    #[test]
    fn stats_of_a_stopped_container_are_an_error() {
        // A stopped container's stats have empty objects; that must not read as zero CPU.
        assert!(parse_stats(r#"{"cpu_stats":{"cpu_usage":{}},"memory_stats":{}}"#).is_err());
    }

    #[test]
    fn label_value_finds_exact_key() {
        let labels = "io.eco-docker.owner-pid=42,io.eco-docker.managed=true";
        assert_eq!(label_value(labels, OWNER_LABEL), Some("42"));
        assert_eq!(label_value(labels, "io.eco-docker.owner"), None);
    }
}
