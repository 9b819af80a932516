//! Stages the Docker build context: only what the image build needs, and everything it needs to build offline.
//!
//! The context holds the workspace manifest cut down to the `service` member, a lock file trimmed to match,
//! the service's sources, `cargo vendor` output and the cargo config that points at it. `target/` never goes
//! to the daemon, and the build inside the image runs `--offline --locked`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

/// The source files of the service that go into every image.
const SERVICE_FILES: &[&str] = &["service/Cargo.toml", "service/src"];

/// What `cargo vendor` asks to be put in `.cargo/config.toml`.
const CARGO_CONFIG: &str = "[source.crates-io]\nreplace-with = \"vendored-sources\"\n\n\
                            [source.vendored-sources]\ndirectory = \"vendor\"\n";

/// Builds or refreshes the context under `target/eco-docker/context` and returns its path.
pub fn stage(sh: &Shell, root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/eco-docker/context");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let manifest =
        std::fs::read_to_string(root.join("Cargo.toml")).context("reading Cargo.toml")?;
    write_if_changed(&dir.join("Cargo.toml"), &service_only_manifest(&manifest)?)?;

    // The service sources are copied afresh each time: the directory is ours (under target/), and a stale
    // file left from an earlier run must not end up in an image.
    let service = dir.join("service");
    if service.exists() {
        std::fs::remove_dir_all(&service)
            .with_context(|| format!("clearing {}", service.display()))?;
    }
    for rel in SERVICE_FILES {
        copy_tree(&root.join(rel), &dir.join(rel))?;
    }

    // Start from the workspace's lock file so every version stays pinned; cargo then drops the entries only
    // xtask needs. Vendoring is the slow part, so it runs only when the trimmed lock file changed.
    let workspace_lock =
        std::fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let stamp = dir.join("vendor.lock-stamp");
    let previous = std::fs::read_to_string(&stamp).unwrap_or_default();
    if previous != workspace_lock || !dir.join("vendor").is_dir() {
        std::fs::write(dir.join("Cargo.lock"), &workspace_lock)?;
        let _dir_guard = sh.push_dir(&dir);
        let _ = std::fs::remove_file(dir.join(".cargo/config.toml"));
        cmd!(sh, "cargo metadata --format-version 1 --offline")
            .quiet()
            .ignore_stdout()
            .run()
            .context("trimming Cargo.lock to the service")?;
        let vendor = dir.join("vendor");
        if vendor.exists() {
            std::fs::remove_dir_all(&vendor)?;
        }
        cmd!(sh, "cargo vendor --locked --quiet vendor")
            .quiet()
            .ignore_stdout()
            .run()
            .context("cargo vendor")?;
        std::fs::write(&stamp, &workspace_lock)?;
    }
    std::fs::create_dir_all(dir.join(".cargo"))?;
    write_if_changed(&dir.join(".cargo/config.toml"), CARGO_CONFIG)?;
    Ok(dir)
}

/// The workspace manifest with `members = ["service"]`: profiles and shared package fields stay as they are.
pub fn service_only_manifest(manifest: &str) -> Result<String> {
    let mut doc: toml_edit::DocumentMut =
        manifest.parse().context("Cargo.toml is not valid TOML")?;
    let Some(workspace) = doc.get_mut("workspace").and_then(|w| w.as_table_mut()) else {
        bail!("Cargo.toml has no [workspace] table");
    };
    let members = workspace
        .get("members")
        .and_then(|m| m.as_array())
        .context("Cargo.toml has no workspace.members")?;
    if !members.iter().any(|m| m.as_str() == Some("service")) {
        bail!("workspace.members in Cargo.toml does not contain \"service\"");
    }
    let mut only = toml_edit::Array::new();
    only.push("service");
    workspace["members"] = toml_edit::value(only);
    Ok(doc.to_string())
}

fn write_if_changed(path: &Path, contents: &str) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(contents) {
        std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let meta = std::fs::metadata(from).with_context(|| format!("reading {}", from.display()))?;
    if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_keeps_everything_but_the_other_members() {
        let manifest = "[workspace]\nresolver = \"3\"\nmembers = [\"service\", \"xtask\"]\n\n\
                        [workspace.package]\nedition = \"2024\"\n\n[profile.release]\nopt-level = \"z\"\n";
        let out = service_only_manifest(manifest).unwrap();
        assert_eq!(
            out,
            "[workspace]\nresolver = \"3\"\nmembers = [\"service\"]\n\n\
             [workspace.package]\nedition = \"2024\"\n\n[profile.release]\nopt-level = \"z\"\n"
        );
    }

    #[test]
    fn manifest_without_the_service_is_an_error() {
        let err = service_only_manifest("[workspace]\nmembers = [\"xtask\"]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "workspace.members in Cargo.toml does not contain \"service\""
        );
        assert!(service_only_manifest("[package]\nname = \"x\"\n").is_err());
    }

    #[test]
    fn the_real_manifest_can_be_cut_down() {
        let manifest = std::fs::read_to_string(crate::project_root().join("Cargo.toml")).unwrap();
        let out = service_only_manifest(&manifest).unwrap();
        assert!(out.contains("members = [\"service\"]"));
        assert!(out.contains("[profile.release]"));
    }
}
