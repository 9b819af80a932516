//! The image variants: one `containers/<name>.Dockerfile` each, with their base-image `ARG`s and size budgets.
//!
//! Adding a variant is adding a Dockerfile (and, if it should be gated, an entry in `containers/budgets.toml`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::model::BudgetCheck;

/// Every ratio and saving is computed against this variant: the naive single-stage image.
pub const BASELINE: &str = "standard";

#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub name: String,
    pub dockerfile: PathBuf,
    pub bases: Vec<BaseArg>,
}

/// `ARG RUST_IMAGE=rust:1-trixie` before the first `FROM`: a base image the variant is built on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseArg {
    pub arg: String,
    pub default: String,
}

impl Variant {
    /// The tag the image keeps after a run, so users can `docker run -p 5000:5000 eco-docker/<name>`.
    pub fn tag(&self) -> String {
        format!("eco-docker/{}:latest", self.name)
    }
}

/// Every `*.Dockerfile` in `dir`, the baseline first, then by name.
pub fn discover(dir: &Path) -> Result<Vec<Variant>> {
    let mut variants = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".Dockerfile"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        variants.push(Variant {
            name: name.to_string(),
            bases: parse_base_args(&text),
            dockerfile: path,
        });
    }
    variants.sort_by(|a, b| (a.name != BASELINE, &a.name).cmp(&(b.name != BASELINE, &b.name)));
    if variants.is_empty() {
        bail!("no variants: {} has no *.Dockerfile", dir.display());
    }
    Ok(variants)
}

/// The base-image `ARG`s (name ending in `_IMAGE`, with a default) declared before the first `FROM`.
pub fn parse_base_args(dockerfile: &str) -> Vec<BaseArg> {
    let mut bases = Vec::new();
    for line in dockerfile.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        let Some(instruction) = words.next() else {
            continue;
        };
        if instruction.eq_ignore_ascii_case("FROM") {
            break;
        }
        if !instruction.eq_ignore_ascii_case("ARG") {
            continue;
        }
        let Some((arg, default)) = words.next().and_then(|w| w.split_once('=')) else {
            continue;
        };
        let default = default.trim_matches('"');
        if arg.ends_with("_IMAGE") && !default.is_empty() {
            bases.push(BaseArg {
                arg: arg.to_string(),
                default: default.to_string(),
            });
        }
    }
    bases
}

/// The variants named by `--variant`, in discovery order; all of them when none is named.
pub fn select(all: &[Variant], requested: &[String]) -> Result<Vec<Variant>> {
    if let Some(unknown) = requested
        .iter()
        .find(|r| !all.iter().any(|v| &v.name == *r))
    {
        let known: Vec<&str> = all.iter().map(|v| v.name.as_str()).collect();
        bail!("unknown variant `{unknown}` (known: {})", known.join(", "));
    }
    Ok(all
        .iter()
        .filter(|v| requested.is_empty() || requested.contains(&v.name))
        .cloned()
        .collect())
}

/// Size limits of one variant, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    pub size: Option<u64>,
    pub compressed: Option<u64>,
}

/// Reads `budgets.toml`: `[variant]` tables with `size` and/or `compressed` as strings with explicit units.
pub fn parse_budgets(text: &str, known: &[Variant]) -> Result<BTreeMap<String, Budget>> {
    let doc: toml_edit::DocumentMut = text.parse().context("budgets.toml is not valid TOML")?;
    let mut budgets = BTreeMap::new();
    for (name, item) in doc.iter() {
        if !known.iter().any(|v| v.name == name) {
            bail!("budgets.toml: `{name}` is not a variant (no containers/{name}.Dockerfile)");
        }
        let table = item
            .as_table()
            .with_context(|| format!("budgets.toml: `{name}` must be a table"))?;
        let mut budget = Budget::default();
        for (key, value) in table.iter() {
            let text = value.as_str().with_context(|| {
                format!("budgets.toml: {name}.{key} must be a string with a unit, e.g. \"2 MB\"")
            })?;
            let bytes = parse_size(text).with_context(|| format!("budgets.toml: {name}.{key}"))?;
            match key {
                "size" => budget.size = Some(bytes),
                "compressed" => budget.compressed = Some(bytes),
                _ => bail!(
                    "budgets.toml: {name}.{key}: unknown key (expected `size` or `compressed`)"
                ),
            }
        }
        budgets.insert(name.to_string(), budget);
    }
    Ok(budgets)
}

/// `"1.5 MB"` → 1,500,000; `"1 MiB"` → 1,048,576. A unit is required: a bare number is ambiguous.
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("`{text}` does not start with a number"))?;
    let factor: u64 = match unit.trim() {
        "B" => 1,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "" => bail!("`{text}` has no unit (use B, kB, MB, GB, KiB, MiB or GiB)"),
        other => bail!("`{other}` is not a size unit (use B, kB, MB, GB, KiB, MiB or GiB)"),
    };
    Ok((number * factor as f64).round() as u64)
}

/// Compares measured sizes with a budget; each exceeded limit is one line naming variant, limit and size.
pub fn check_budget(variant: &str, budget: &Budget, size: u64, compressed: u64) -> BudgetCheck {
    let mut violations = Vec::new();
    let mut check = |what: &str, limit: Option<u64>, measured: u64| {
        if let Some(limit) = limit.filter(|&limit| measured > limit) {
            violations.push(format!(
                "{variant}: {what} size {measured} bytes ({:.2} MB) exceeds its budget of {limit} bytes ({:.2} MB)",
                measured as f64 / 1e6,
                limit as f64 / 1e6
            ));
        }
    };
    check("uncompressed", budget.size, size);
    check("compressed", budget.compressed, compressed);
    BudgetCheck {
        max_size_bytes: budget.size,
        max_compressed_bytes: budget.compressed,
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(name: &str) -> Variant {
        Variant {
            name: name.into(),
            dockerfile: PathBuf::from(format!("{name}.Dockerfile")),
            bases: vec![],
        }
    }

    #[test]
    fn base_args_are_read_before_the_first_from_only() {
        let text = "# comment\nARG RUST_IMAGE=rust:1-trixie\nARG RUNTIME_IMAGE=\"debian:trixie-slim\"\nARG OTHER=1\n\
                    ARG EMPTY_IMAGE\nFROM ${RUST_IMAGE} AS build\nARG LATE_IMAGE=nope\n";
        assert_eq!(
            parse_base_args(text),
            vec![
                BaseArg {
                    arg: "RUST_IMAGE".into(),
                    default: "rust:1-trixie".into()
                },
                BaseArg {
                    arg: "RUNTIME_IMAGE".into(),
                    default: "debian:trixie-slim".into()
                },
            ]
        );
    }

    #[test]
    fn discovery_puts_the_baseline_first_and_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "static.Dockerfile",
            "alpine.Dockerfile",
            "standard.Dockerfile",
            "budgets.toml",
            "notes.md",
        ] {
            std::fs::write(dir.path().join(f), "FROM scratch\n").unwrap();
        }
        let names: Vec<String> = discover(dir.path())
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["standard", "alpine", "static"]);
    }

    #[test]
    fn selection_keeps_order_and_rejects_unknown_names() {
        let all = vec![variant("standard"), variant("slim"), variant("static")];
        let picked = select(&all, &["static".into(), "standard".into()]).unwrap();
        assert_eq!(
            picked.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            ["standard", "static"]
        );
        assert_eq!(select(&all, &[]).unwrap().len(), 3);
        let err = select(&all, &["tiny".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown variant `tiny` (known: standard, slim, static)"
        );
    }

    #[test]
    fn sizes_need_explicit_units() {
        assert_eq!(parse_size("1.5 MB").unwrap(), 1_500_000);
        assert_eq!(parse_size("1 MiB").unwrap(), 1_048_576);
        assert_eq!(parse_size("900MB").unwrap(), 900_000_000);
        assert_eq!(parse_size("2 GiB").unwrap(), 2_147_483_648);
        assert_eq!(parse_size("12 B").unwrap(), 12);
        assert_eq!(
            parse_size("3").unwrap_err().to_string(),
            "`3` has no unit (use B, kB, MB, GB, KiB, MiB or GiB)"
        );
        assert!(parse_size("3 mb").is_err());
        assert!(parse_size("MB").is_err());
    }

    #[test]
    fn budgets_parse_and_reject_unknown_variants_and_keys() {
        let known = vec![variant("static"), variant("slim")];
        let b = parse_budgets(
            "[static]\nsize = \"2 MB\"\ncompressed = \"1 MiB\"\n[slim]\nsize = \"100 MB\"\n",
            &known,
        )
        .unwrap();
        assert_eq!(
            b["static"],
            Budget {
                size: Some(2_000_000),
                compressed: Some(1_048_576)
            }
        );
        assert_eq!(
            b["slim"],
            Budget {
                size: Some(100_000_000),
                compressed: None
            }
        );
        assert!(
            parse_budgets("[tiny]\nsize = \"1 MB\"\n", &known)
                .unwrap_err()
                .to_string()
                .contains("`tiny` is not a variant")
        );
        assert!(parse_budgets("[static]\nsizes = \"1 MB\"\n", &known).is_err());
        assert!(parse_budgets("[static]\nsize = 1\n", &known).is_err());
    }

    #[test]
    fn a_budget_that_must_fail_names_variant_limit_and_size() {
        let budget = Budget {
            size: Some(1_000_000),
            compressed: Some(500_000),
        };
        let check = check_budget("static", &budget, 1_650_000, 400_000);
        assert_eq!(
            check.violations,
            [
                "static: uncompressed size 1650000 bytes (1.65 MB) exceeds its budget of 1000000 bytes (1.00 MB)"
            ]
        );
        assert!(
            check_budget("static", &budget, 1_000_000, 500_000)
                .violations
                .is_empty()
        );
    }
}
