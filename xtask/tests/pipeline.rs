//! The xtask against the real Docker daemon: the smoke test, the experiment, the budget gate, and the
//! one-line errors a user gets when something is missing.
//!
//! Nothing here skips silently: without Docker these tests fail and say so. The tests that talk to the
//! daemon hold one lock, because each run sweeps the labelled containers of dead runs and they share tags.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

static DOCKER: Mutex<()> = Mutex::new(());

fn xtask() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.env("NO_COLOR", "1");
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("the xtask binary runs");
    eprintln!(
        "--- stdout\n{}--- stderr\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Fails, with the reason, when no Docker daemon answers: these tests are the proof the pipeline works.
fn require_docker() {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "these tests need a running Docker daemon: `docker version` says {}",
            text(&out.stderr)
        ),
        Err(err) => panic!("these tests need the docker CLI and a running daemon: {err}"),
    }
}

/// Containers carrying the project label: after a run there must be none.
fn labelled_containers() -> String {
    let out = Command::new("docker")
        .args([
            "ps",
            "--all",
            "--quiet",
            "--filter",
            "label=io.eco-docker.managed=true",
        ])
        .output()
        .expect("docker ps runs");
    text(&out.stdout).trim().to_string()
}

fn report(dir: &Path) -> serde_json::Value {
    let json = std::fs::read_to_string(dir.join("report.json")).expect("report.json is written");
    serde_json::from_str(&json).expect("report.json is JSON")
}

fn variant<'r>(report: &'r serde_json::Value, name: &str) -> &'r serde_json::Value {
    report["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("{name} in report"))
}

fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn smoke_test_builds_runs_and_checks_static() {
    let _lock = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    require_docker();
    let out = run(xtask().arg("smoke-test"));
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("smoke test passed: eco-docker/static:latest answered exactly"),
        "{stdout}"
    );
    assert!(stdout.contains("6 checks passed"), "{stdout}");
    assert!(stdout.contains("with exit code 0"), "{stdout}");
    assert_eq!(
        labelled_containers(),
        "",
        "the smoke test left containers behind"
    );
}

#[test]
fn experiment_builds_measures_checks_and_reports_every_variant() {
    let _lock = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    require_docker();
    let dir = out_dir("experiment");
    let out = run(xtask()
        .args([
            "experiment",
            "--requests",
            "1000",
            "--concurrency",
            "8",
            "--out",
        ])
        .arg(&dir));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        labelled_containers(),
        "",
        "the experiment left containers behind"
    );

    let report = report(&dir);
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["baseline"], "standard");
    let names: Vec<&str> = report["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["standard", "alpine", "slim", "static"]);

    for name in ["standard", "slim", "static"] {
        let v = variant(&report, name);
        assert_eq!(v["outcome"]["status"], "passed", "{name}: {}", v["outcome"]);
        assert_eq!(v["tag"], format!("eco-docker/{name}:latest"));
        let checks = v["run"]["checks"].as_array().unwrap();
        // Five answer checks, and for the image with a HEALTHCHECK, Docker's verdict on it.
        let with_healthcheck = name == "static";
        assert_eq!(
            checks.len(),
            if with_healthcheck { 6 } else { 5 },
            "{name}: {checks:?}"
        );
        assert!(
            checks.iter().all(|c| c["passed"] == true),
            "{name}: {checks:?}"
        );
        assert_eq!(
            v["run"]["exit_code"], 0,
            "{name} must exit 0 on docker stop"
        );
        let image = &v["image"];
        let layers = image["layers"].as_array().unwrap();
        assert!(!layers.is_empty());
        let layer_sum: u64 = layers
            .iter()
            .map(|l| l["compressed_bytes"].as_u64().unwrap())
            .sum();
        assert_eq!(image["compressed_bytes"].as_u64().unwrap(), layer_sum);
        assert!(
            image["compressed_bytes"].as_u64().unwrap() < image["size_bytes"].as_u64().unwrap()
        );
        assert_eq!(v["load"]["requests"], 1000);
        assert_eq!(v["load"]["errors"], 0);
        assert!(
            v["load"]["cpu_ms_per_1000"].as_f64().unwrap() > 0.0,
            "{name}: CPU time from the cgroup"
        );
        assert!(
            v["eco"]["total_kwh"]["low"].as_f64().unwrap()
                <= v["eco"]["total_kwh"]["high"].as_f64().unwrap()
        );
        // The image the report describes is really there, under its documented tag.
        let id = Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}"])
            .arg(v["tag"].as_str().unwrap())
            .output()
            .unwrap();
        assert_eq!(text(&id.stdout).trim(), image["id"].as_str().unwrap());
    }

    // The static image is the smallest, and holds exactly one layer: the binary.
    let size = |name| {
        variant(&report, name)["image"]["size_bytes"]
            .as_u64()
            .unwrap()
    };
    assert!(size("static") < size("slim") && size("slim") < size("standard"));
    assert_eq!(
        variant(&report, "static")["image"]["layers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        variant(&report, "static")["image"]["layers"][0]["file_count"],
        1
    );

    // alpine: used if the public image can be had, otherwise skipped with the reason; never a stand-in.
    let alpine = variant(&report, "alpine");
    match alpine["outcome"]["status"].as_str().unwrap() {
        "passed" => assert_eq!(alpine["bases"][1]["used"], "alpine:3.22"),
        "skipped" => {
            let reason = alpine["outcome"]["reason"].as_str().unwrap();
            assert!(
                reason.contains("alpine:3.22") && reason.contains("no local recipe"),
                "{reason}"
            );
        }
        other => panic!("alpine is {other}: {}", alpine["outcome"]),
    }

    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for name in ["standard", "slim", "static", "alpine"] {
        assert!(md.contains(name), "report.md mentions {name}");
    }
    let svg = std::fs::read_to_string(dir.join("sizes.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "sizes.svg is an SVG");
    assert!(dir.join("logs/static.build.log").is_file());
}

#[test]
fn a_budget_that_must_fail_fails_the_gate_with_one_clear_line() {
    let _lock = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    require_docker();
    let dir = out_dir("budget");
    std::fs::create_dir_all(&dir).unwrap();
    let budgets = dir.join("budgets.toml");
    std::fs::write(&budgets, "[static]\nsize = \"1 kB\"\n").unwrap();
    let out = run(xtask()
        .args([
            "experiment",
            "--variant",
            "static",
            "--check-budgets",
            "--requests",
            "100",
            "--budgets",
        ])
        .arg(&budgets)
        .arg("--out")
        .arg(&dir));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: static: uncompressed size"))
        .expect("a budget line");
    assert!(
        line.ends_with("exceeds its budget of 1000 bytes (0.00 MB)"),
        "{line}"
    );
    // The same run without --check-budgets reports but does not fail.
    let out = run(xtask()
        .args([
            "experiment",
            "--variant",
            "static",
            "--requests",
            "100",
            "--budgets",
        ])
        .arg(&budgets)
        .arg("--out")
        .arg(&dir));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(labelled_containers(), "");
}

#[test]
fn unknown_variant_is_one_line_and_exit_1() {
    let out = run(xtask().args(["experiment", "--variant", "tiny"]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: unknown variant `tiny` (known: standard, alpine, slim, static)\n"
    );
}

#[test]
fn bad_flags_are_usage_errors_with_exit_2() {
    let out = run(xtask().args(["experiment", "--bandwidth-mbit", "0"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`0` must be greater than 0"));
    let out = run(xtask().args(["experiment", "--base-source", "cloud"]));
    assert_eq!(out.status.code(), Some(2));
    let out = run(xtask().arg("deploy"));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn missing_docker_cli_is_one_line() {
    let empty = tempfile::tempdir().unwrap();
    let out = run(xtask().arg("smoke-test").env("PATH", empty.path()));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: the `docker` CLI is not on PATH: install Docker (https://docs.docker.com/engine/install/)\n"
    );
}

#[test]
fn a_daemon_that_does_not_answer_is_one_line() {
    let out = run(xtask()
        .arg("smoke-test")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: the Docker daemon does not answer ("),
        "{stderr}"
    );
}

#[test]
fn a_bad_budgets_file_fails_before_anything_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let budgets = dir.path().join("budgets.toml");
    std::fs::write(&budgets, "[static]\nsize = 3\n").unwrap();
    let out = run(xtask().args(["experiment", "--budgets"]).arg(&budgets));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("budgets.toml: static.size must be a string with a unit"),
        "{stderr}"
    );
}

#[test]
fn an_interrupted_run_removes_its_container_and_exits_130() {
    let _lock = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    require_docker();
    let dir = out_dir("interrupted");
    // A load far longer than the test waits, so the container is certainly running when SIGINT comes.
    let mut child = xtask()
        .args([
            "experiment",
            "--variant",
            "static",
            "--requests",
            "100000000",
            "--out",
        ])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the xtask binary starts");
    let owner = format!("label=io.eco-docker.owner-pid={}", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        let out = Command::new("docker")
            .args(["ps", "--quiet", "--filter", &owner])
            .output()
            .unwrap();
        if !text(&out.stdout).trim().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the experiment never started its container"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the experiment ended before it was interrupted"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("interrupted: removing this run's containers\n"));
    let left = Command::new("docker")
        .args(["ps", "--all", "--quiet", "--filter", &owner])
        .output()
        .unwrap();
    assert_eq!(
        text(&left.stdout).trim(),
        "",
        "the interrupted run left its container"
    );
}
