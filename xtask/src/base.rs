//! Base image resolution: for each base a Dockerfile asks for, find an image to build on.
//!
//! In order: the public image already in the local store, a `docker pull`, and — for bases with a local recipe —
//! a stand-in built from Debian packages (`mmdebstrap … | docker import`) under a clearly local tag. When none
//! works the variant is skipped with the reasons. The report records which one was used: a stand-in is never
//! presented as the public image.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::docker::{Docker, ImageInfo};
use crate::model::{BaseProvenance, BaseSource};
use crate::variant::BaseArg;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    /// The public image (local store or pull), else a local recipe.
    Auto,
    /// Only the public image: local store or pull.
    Registry,
    /// Only local recipes, even where the public image could be had.
    Local,
}

/// How to build a stand-in for a public base image from Debian packages.
#[derive(Debug, PartialEq, Eq)]
pub struct Recipe {
    pub name: &'static str,
    /// The public references this recipe stands in for.
    pub stands_in_for: &'static [&'static str],
    pub tag: &'static str,
    pub description: &'static str,
    pub mmdebstrap_args: &'static [&'static str],
    /// `docker import --change` instructions, as the public image's config would have them.
    pub changes: &'static [&'static str],
    /// A command whose output names the toolchain inside, recorded in the report.
    pub version_command: Option<&'static [&'static str]>,
}

/// Empties apt's package lists and cache, as the public images do.
const DROP_APT_LISTS: &str =
    "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*";
const PATH: &str = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub const RECIPES: &[Recipe] = &[
    Recipe {
        name: "rust-toolchain-trixie",
        stands_in_for: &["rust:1-trixie", "rust:trixie", "rust:1", "rust:latest"],
        tag: "eco-local/rust-toolchain:trixie",
        description: "Debian trixie minbase + Debian's rustc and cargo (mmdebstrap)",
        // rustc depends on gcc, binutils and libc6-dev (with libc.a), so static builds work too.
        mmdebstrap_args: &[
            "--variant=minbase",
            "--include=rustc,cargo",
            DROP_APT_LISTS,
            "trixie",
            "-",
        ],
        changes: &[PATH, "ENV LANG=C.UTF-8", "CMD [\"bash\"]"],
        version_command: Some(&["rustc", "--version"]),
    },
    Recipe {
        name: "debian-slim-trixie",
        stands_in_for: &["debian:trixie-slim", "debian:13-slim"],
        tag: "eco-local/debian-slim:trixie",
        description: "Debian trixie minbase without docs, man pages, locales or apt lists (mmdebstrap)",
        // The path excludes `debian:*-slim` is made with.
        mmdebstrap_args: &[
            "--variant=minbase",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-include=/usr/share/locale/locale.alias",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/info/*",
            DROP_APT_LISTS,
            "trixie",
            "-",
        ],
        changes: &[PATH, "CMD [\"bash\"]"],
        version_command: None,
    },
];

pub fn recipe_for(reference: &str) -> Option<&'static Recipe> {
    RECIPES
        .iter()
        .find(|r| r.stands_in_for.contains(&reference))
}

/// Where a base can come from, in the order a policy tries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Public,
    Recipe,
}

pub fn sources(policy: Policy) -> &'static [Source] {
    match policy {
        Policy::Auto => &[Source::Public, Source::Recipe],
        Policy::Registry => &[Source::Public],
        Policy::Local => &[Source::Recipe],
    }
}

/// What resolution needs from Docker, so the decisions can be tested without a daemon.
pub trait Images {
    fn local(&mut self, reference: &str) -> Result<Option<ImageInfo>>;
    fn pull(&mut self, reference: &str) -> Result<()>;
    fn build_recipe(&mut self, recipe: &Recipe) -> Result<()>;
    fn toolchain_version(&mut self, recipe: &Recipe) -> Result<Option<String>>;
}

/// A resolved base: what to pass as `--build-arg`, and what to report.
pub type Resolution = std::result::Result<BaseProvenance, String>;

/// Resolves one base reference; `Err` carries every reason it could not be had, for the skip message.
pub fn resolve(arg: &BaseArg, policy: Policy, images: &mut impl Images) -> Result<Resolution> {
    let reference = arg.default.as_str();
    let provenance = |used: &str, source| BaseProvenance {
        arg: arg.arg.clone(),
        requested: reference.to_string(),
        used: used.to_string(),
        source,
    };
    if reference == "scratch" {
        return Ok(Ok(provenance("scratch", BaseSource::Scratch)));
    }
    let mut reasons = Vec::new();
    for source in sources(policy) {
        match source {
            Source::Public => {
                if let Some(info) = images.local(reference)? {
                    let repo_digest = info.repo_digests.first().cloned();
                    return Ok(Ok(provenance(
                        reference,
                        BaseSource::Local {
                            image_id: info.id,
                            repo_digest,
                        },
                    )));
                }
                match images.pull(reference) {
                    Ok(()) => {
                        let info = images
                            .local(reference)?
                            .with_context(|| format!("{reference} vanished after pull"))?;
                        let repo_digest = info.repo_digests.first().cloned();
                        return Ok(Ok(provenance(
                            reference,
                            BaseSource::Pulled {
                                image_id: info.id,
                                repo_digest,
                            },
                        )));
                    }
                    Err(err) => reasons.push(format!("{err:#}")),
                }
            }
            Source::Recipe => {
                let Some(recipe) = recipe_for(reference) else {
                    reasons.push(format!("no local recipe stands in for {reference}"));
                    continue;
                };
                // A recipe that exists but cannot run (mmdebstrap missing, mirror down) is an error, not a skip:
                // the user asked for a base we know how to make, and should fix the machine rather than get a
                // report with holes in it.
                if images.local(recipe.tag)?.is_none() {
                    images.build_recipe(recipe).with_context(|| {
                        if reasons.is_empty() {
                            format!("{reference}: building its local stand-in failed")
                        } else {
                            let why = reasons.join("; ");
                            format!("{reference} is not available ({why}) and building its local stand-in failed")
                        }
                    })?;
                }
                let info = images
                    .local(recipe.tag)?
                    .with_context(|| format!("{} missing after its recipe ran", recipe.tag))?;
                let toolchain = images.toolchain_version(recipe)?;
                return Ok(Ok(provenance(
                    recipe.tag,
                    BaseSource::Recipe {
                        recipe: recipe.name.to_string(),
                        description: recipe.description.to_string(),
                        image_id: info.id,
                        toolchain,
                    },
                )));
            }
        }
    }
    Ok(Err(format!("{reference}: {}", reasons.join("; "))))
}

/// Resolves bases against the real daemon, remembering each answer so a run asks once per reference.
pub struct Resolver<'d, 'a> {
    docker: &'d Docker<'a>,
    policy: Policy,
    log_dir: &'d Path,
    memo: HashMap<String, Resolution>,
}

impl<'d, 'a> Resolver<'d, 'a> {
    pub fn new(docker: &'d Docker<'a>, policy: Policy, log_dir: &'d Path) -> Self {
        Resolver {
            docker,
            policy,
            log_dir,
            memo: HashMap::new(),
        }
    }

    pub fn resolve(&mut self, arg: &BaseArg) -> Result<Resolution> {
        if let Some(done) = self.memo.get(&arg.default) {
            return Ok(done.clone().map(|p| BaseProvenance {
                arg: arg.arg.clone(),
                ..p
            }));
        }
        let mut images = DaemonImages {
            docker: self.docker,
            log_dir: self.log_dir,
        };
        let resolution = resolve(arg, self.policy, &mut images)?;
        self.memo.insert(arg.default.clone(), resolution.clone());
        Ok(resolution)
    }
}

struct DaemonImages<'d, 'a> {
    docker: &'d Docker<'a>,
    log_dir: &'d Path,
}

impl Images for DaemonImages<'_, '_> {
    fn local(&mut self, reference: &str) -> Result<Option<ImageInfo>> {
        self.docker.image_inspect(reference)
    }

    fn pull(&mut self, reference: &str) -> Result<()> {
        self.docker.pull(reference)
    }

    fn build_recipe(&mut self, recipe: &Recipe) -> Result<()> {
        if crate::docker::which("mmdebstrap").is_none() {
            bail!(
                "mmdebstrap is not installed (it builds the stand-in {}): apt-get install mmdebstrap",
                recipe.tag
            );
        }
        std::fs::create_dir_all(self.log_dir)?;
        let log = self.log_dir.join(format!("base-{}.log", recipe.name));
        eprintln!(
            "building local base {} ({}); log: {}",
            recipe.tag,
            recipe.description,
            log.display()
        );
        let mut import: Vec<String> = vec!["import".into()];
        for change in recipe.changes {
            import.extend(["--change".into(), (*change).into()]);
        }
        import.extend([
            "--change".into(),
            format!("LABEL io.eco-docker.recipe={}", recipe.name),
            "-".into(),
            recipe.tag.into(),
        ]);
        let log_file = std::fs::File::create(&log)?;
        let result = duct::cmd("mmdebstrap", recipe.mmdebstrap_args)
            .stderr_file(log_file.try_clone()?)
            .pipe(
                duct::cmd("docker", &import)
                    .stderr_file(log_file.try_clone()?)
                    .stdout_file(log_file),
            )
            .run();
        result.with_context(|| format!("mmdebstrap | docker import; see {}", log.display()))?;
        Ok(())
    }

    fn toolchain_version(&mut self, recipe: &Recipe) -> Result<Option<String>> {
        let Some(command) = recipe.version_command else {
            return Ok(None);
        };
        self.docker.run_once(recipe.tag, command).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake image store: which references are present, whether pulls work, and a call log.
    #[derive(Default)]
    struct Fake {
        present: Vec<String>,
        pull_works: bool,
        recipe_works: bool,
        calls: Vec<String>,
    }

    impl Images for Fake {
        fn local(&mut self, reference: &str) -> Result<Option<ImageInfo>> {
            self.calls.push(format!("local {reference}"));
            Ok(self
                .present
                .iter()
                .any(|p| p == reference)
                .then(|| ImageInfo {
                    id: format!("sha256:{reference}"),
                    repo_digests: vec![format!("{reference}@sha256:d")],
                    size: 1,
                    layers: vec![],
                    healthcheck: false,
                }))
        }
        fn pull(&mut self, reference: &str) -> Result<()> {
            self.calls.push(format!("pull {reference}"));
            if !self.pull_works {
                bail!("no route to registry");
            }
            self.present.push(reference.to_string());
            Ok(())
        }
        fn build_recipe(&mut self, recipe: &Recipe) -> Result<()> {
            self.calls.push(format!("recipe {}", recipe.name));
            if !self.recipe_works {
                bail!("mmdebstrap is not installed");
            }
            self.present.push(recipe.tag.to_string());
            Ok(())
        }
        fn toolchain_version(&mut self, _: &Recipe) -> Result<Option<String>> {
            Ok(Some("rustc 1.85.1".into()))
        }
    }

    fn rust() -> BaseArg {
        BaseArg {
            arg: "RUST_IMAGE".into(),
            default: "rust:1-trixie".into(),
        }
    }

    fn alpine() -> BaseArg {
        BaseArg {
            arg: "RUNTIME_IMAGE".into(),
            default: "alpine:3.22".into(),
        }
    }

    #[test]
    fn a_present_public_image_is_used_without_pulling() {
        let mut fake = Fake {
            present: vec!["rust:1-trixie".into()],
            ..Fake::default()
        };
        let p = resolve(&rust(), Policy::Auto, &mut fake).unwrap().unwrap();
        assert_eq!(p.used, "rust:1-trixie");
        assert!(
            matches!(p.source, BaseSource::Local { ref repo_digest, .. } if repo_digest.as_deref() == Some("rust:1-trixie@sha256:d"))
        );
        assert_eq!(fake.calls, ["local rust:1-trixie"]);
    }

    #[test]
    fn a_pullable_image_is_pulled_and_reported_as_pulled() {
        let mut fake = Fake {
            pull_works: true,
            ..Fake::default()
        };
        let p = resolve(&rust(), Policy::Auto, &mut fake).unwrap().unwrap();
        assert!(matches!(p.source, BaseSource::Pulled { .. }));
        assert_eq!(
            fake.calls,
            [
                "local rust:1-trixie",
                "pull rust:1-trixie",
                "local rust:1-trixie"
            ]
        );
    }

    #[test]
    fn auto_falls_back_to_the_recipe_under_its_local_tag() {
        let mut fake = Fake {
            recipe_works: true,
            ..Fake::default()
        };
        let p = resolve(&rust(), Policy::Auto, &mut fake).unwrap().unwrap();
        assert_eq!(p.requested, "rust:1-trixie");
        assert_eq!(p.used, "eco-local/rust-toolchain:trixie");
        assert!(
            matches!(p.source, BaseSource::Recipe { ref toolchain, .. } if toolchain.as_deref() == Some("rustc 1.85.1"))
        );
    }

    #[test]
    fn an_existing_stand_in_is_reused_not_rebuilt() {
        let mut fake = Fake {
            present: vec!["eco-local/rust-toolchain:trixie".into()],
            ..Fake::default()
        };
        resolve(&rust(), Policy::Local, &mut fake).unwrap().unwrap();
        assert!(
            !fake
                .calls
                .iter()
                .any(|c| c.starts_with("recipe") || c.starts_with("pull"))
        );
    }

    #[test]
    fn registry_policy_never_uses_a_recipe() {
        let mut fake = Fake {
            recipe_works: true,
            ..Fake::default()
        };
        let reason = resolve(&rust(), Policy::Registry, &mut fake)
            .unwrap()
            .unwrap_err();
        assert_eq!(reason, "rust:1-trixie: no route to registry");
        assert!(!fake.calls.iter().any(|c| c.starts_with("recipe")));
    }

    #[test]
    fn local_policy_never_pulls_even_when_the_public_image_is_present() {
        let mut fake = Fake {
            present: vec!["rust:1-trixie".into()],
            recipe_works: true,
            ..Fake::default()
        };
        let p = resolve(&rust(), Policy::Local, &mut fake).unwrap().unwrap();
        assert_eq!(p.used, "eco-local/rust-toolchain:trixie");
        assert!(!fake.calls.iter().any(|c| c.starts_with("pull")));
    }

    #[test]
    fn no_image_and_no_recipe_gives_every_reason() {
        let mut fake = Fake::default();
        let reason = resolve(&alpine(), Policy::Auto, &mut fake)
            .unwrap()
            .unwrap_err();
        assert_eq!(
            reason,
            "alpine:3.22: no route to registry; no local recipe stands in for alpine:3.22"
        );
    }

    #[test]
    fn a_failing_recipe_is_an_error_not_a_skip() {
        let mut fake = Fake::default();
        let err = resolve(&rust(), Policy::Auto, &mut fake).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "rust:1-trixie is not available (no route to registry) and building its local stand-in failed: mmdebstrap is not installed"
        );
        let err = resolve(&rust(), Policy::Local, &mut Fake::default()).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "rust:1-trixie: building its local stand-in failed: mmdebstrap is not installed"
        );
    }

    #[test]
    fn scratch_needs_no_resolution() {
        let arg = BaseArg {
            arg: "RUNTIME_IMAGE".into(),
            default: "scratch".into(),
        };
        let p = resolve(&arg, Policy::Registry, &mut Fake::default())
            .unwrap()
            .unwrap();
        assert_eq!(p.source, BaseSource::Scratch);
    }
}
