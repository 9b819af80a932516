//! Renders a [`Report`]: `report.json`, `report.md` (ready to append to a GitHub job summary), `sizes.svg`
//! and the terminal table. Nothing here measures anything: it only formats and writes files.
//!
//! Human-readable sizes are decimal megabytes (1 MB = 10^6 bytes) everywhere; `report.json` keeps bytes.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use comfy_table::{Cell, CellAlignment, Table, presets};
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::model::{
    BaseProvenance, BaseSource, Image, Layer, Outcome, Range, Report, VariantReport,
};

/// Longest `created_by` shown in a layer table, in characters.
const COMMAND_WIDTH: usize = 80;
const SVG_SIZE: (u32, u32) = (960, 540);
const UNCOMPRESSED_COLOR: RGBColor = RGBColor(0x4c, 0x72, 0xb0);
const COMPRESSED_COLOR: RGBColor = RGBColor(0x55, 0xa8, 0x68);
/// Marks a variant built on a local stand-in base instead of the public image.
const STAND_IN_MARK: &str = "⚠️";

/// Writes `report.json`, `report.md` and `sizes.svg` into `dir`, creating it if needed.
///
/// Everything is rendered before the first write, and each file is written to a temporary file in `dir`
/// then renamed over the target, so a reader never sees a half-written file.
pub fn write_all(report: &Report, dir: &Path) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report).context("serializing the report")?;
    let markdown = markdown(report);
    let svg = svg(report).context("drawing sizes.svg")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomically(&dir.join("report.json"), json.as_bytes())?;
    write_atomically(&dir.join("report.md"), markdown.as_bytes())?;
    write_atomically(&dir.join("sizes.svg"), svg.as_bytes())
}

fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .context("a report file needs a name")?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let written = fs::File::create(&tmp)
        .and_then(|mut file| file.write_all(contents).and_then(|()| file.sync_all()))
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        // The temporary file may not exist; there is nothing more to do about a failed cleanup.
        let _ = fs::remove_file(&tmp);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

/// The whole report as GitHub-flavoured Markdown.
pub fn markdown(report: &Report) -> String {
    let mut md = String::new();
    md.push_str("## eco-docker: can a smaller image be more eco-efficient?\n\n");
    md.push_str(&scenario_line(report));
    md.push_str("\n\n");
    md.push_str(&comparison_table(report));
    md.push_str(&outcome_notes(report));
    for variant in &report.variants {
        md.push('\n');
        md.push_str(&variant_section(report, variant));
    }
    md.push('\n');
    md.push_str(&coefficients_table(report));
    md.push('\n');
    md.push_str(MEASURED_VS_ESTIMATED);
    md
}

fn scenario_line(report: &Report) -> String {
    let s = &report.scenario;
    format!(
        "Scenario: {} deploys/day × {} nodes × {} days, {} requests/day per container, grid {} gCO2e/kWh, \
         pulls modelled at {} Mbit/s; baseline `{}`; sizes in MB = 10^6 bytes. \
         Host: Docker {}, {} CPUs, {}; eco-docker `{}`.",
        s.deploys_per_day,
        s.nodes_per_deploy,
        s.days,
        s.requests_per_day,
        s.grid_g_co2e_per_kwh,
        s.bandwidth_mbit,
        report.baseline,
        report.host.docker_server_version,
        report.host.cpus,
        report.host.os,
        report.host.revision,
    )
}

/// The columns the Markdown and the terminal tables share, after the variant's name: outcome, size,
/// compressed size, ratio to the baseline, cold start (ms), idle memory, requests per second.
fn summary_cells(v: &VariantReport, baseline_size: Option<u64>) -> [String; 7] {
    let image = v.image.as_ref();
    [
        outcome_word(&v.outcome).to_owned(),
        or_na(image.map(|i| mb(i.size_bytes))),
        or_na(image.map(|i| mb(i.compressed_bytes))),
        or_na(
            image
                .zip(baseline_size)
                .map(|(i, base)| ratio(i.size_bytes, base)),
        ),
        or_na(v.run.as_ref().map(|r| format!("{:.0}", r.cold_start_ms))),
        or_na(v.run.as_ref().map(|r| mb(r.idle_memory_bytes))),
        or_na(
            v.load
                .as_ref()
                .map(|l| format!("{:.0}", l.requests_per_second)),
        ),
    ]
}

fn comparison_table(report: &Report) -> String {
    let baseline_size = baseline_image(report).map(|image| image.size_bytes);
    let mut md = String::from(
        "| Variant | Outcome | Size | Compressed | vs baseline | Cold start (ms) | Idle memory | Req/s \
         | Energy (kWh, low–high) | CO2e (kg, low–high) | Saved vs baseline (kWh, low–high) |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for v in &report.variants {
        let eco = v.eco.as_ref();
        let mut cells = vec![variant_label(v)];
        cells.extend(summary_cells(v, baseline_size));
        cells.extend([
            or_na(eco.map(|e| range(e.total_kwh, 1.0))),
            or_na(eco.map(|e| range(e.total_g_co2e, 1e-3))),
            or_na(
                eco.and_then(|e| e.savings_kwh_vs_baseline)
                    .map(|r| range(r, 1.0)),
            ),
        ]);
        md.push_str(&row(&cells));
    }
    md
}

/// The notes under the comparison table: why variants did not pass, and what the stand-in mark means.
fn outcome_notes(report: &Report) -> String {
    let mut notes = String::new();
    for v in &report.variants {
        match &v.outcome {
            Outcome::Passed => {}
            Outcome::Failed { reason } | Outcome::Skipped { reason } => {
                let _ = writeln!(
                    notes,
                    "- `{}` {}: {}",
                    v.name,
                    outcome_word(&v.outcome),
                    one_line(reason)
                );
            }
        }
    }
    if report.variants.iter().any(uses_stand_in) {
        let _ = writeln!(
            notes,
            "- {STAND_IN_MARK} built on a local stand-in for a public base image, not the public image itself: \
             see its base images below."
        );
    }
    if report
        .variants
        .iter()
        .any(|v| v.eco.is_some() && v.load.is_none())
    {
        notes.push_str("- Energy without a load run covers transfer and storage only: compute was not measured.\n");
    }
    if notes.is_empty() {
        notes
    } else {
        format!("\n{notes}")
    }
}

fn variant_section(report: &Report, v: &VariantReport) -> String {
    let mut md = format!("### `{}`\n\n", v.name);
    let _ = write!(md, "Tag `{}`: **{}**", v.tag, outcome_word(&v.outcome));
    match &v.outcome {
        Outcome::Passed => md.push_str(".\n"),
        Outcome::Failed { reason } | Outcome::Skipped { reason } => {
            let _ = writeln!(md, ": {}", one_line(reason));
        }
    }
    if !v.bases.is_empty() {
        md.push('\n');
        md.push_str(&bases_table(&v.bases));
    }
    if let Some(image) = &v.image {
        if !image.layers.is_empty() {
            md.push('\n');
            md.push_str(&layers_table(&image.layers));
        }
        let e = image.efficiency;
        let _ = writeln!(
            md,
            "\n**Image efficiency:** score {:.4} (dive's metric), {} wasted ({:.1}% of the bytes above the \
             first layer).",
            e.score,
            mb(e.wasted_bytes),
            e.wasted_user_fraction * 100.0,
        );
        let _ = writeln!(
            md,
            "\n**Deploy cost:** unpack {} s (measured), pull {} s (modelled at {} Mbit/s).",
            sig(image.unpack_seconds),
            sig(image.pull_seconds_modelled),
            report.scenario.bandwidth_mbit,
        );
    }
    if let Some(build) = &v.build {
        let _ = writeln!(
            md,
            "\n**Build:** {} s, {} of {} steps from Docker's cache (log: `{}`).",
            sig(build.seconds),
            build.cached_steps,
            build.steps,
            build.log
        );
    }
    if let Some(run) = &v.run {
        let passed = run.checks.iter().filter(|c| c.passed).count();
        let _ = writeln!(
            md,
            "\n**Start and stop:** cold start {:.0} ms, idle memory {}, stop {:.0} ms (exit code {}); \
             checks {passed}/{} passed.",
            run.cold_start_ms,
            mb(run.idle_memory_bytes),
            run.stop_ms,
            run.exit_code,
            run.checks.len(),
        );
        for check in run.checks.iter().filter(|c| !c.passed) {
            let _ = writeln!(
                md,
                "- check `{}` failed: {}",
                check.name,
                one_line(&check.detail)
            );
        }
    }
    if let Some(load) = &v.load {
        let idle = v
            .run
            .as_ref()
            .map_or_else(|| "n/a".to_owned(), |r| mb(r.idle_memory_bytes));
        let _ = writeln!(
            md,
            "\n**Runtime under load** ({} requests, {} concurrent, {} errors): {:.0} req/s, p50 {} ms, \
             p99 {} ms, {} CPU ms per 1,000 requests, memory {idle} idle → {} after.",
            load.requests,
            load.concurrency,
            load.errors,
            load.requests_per_second,
            sig(load.p50_ms),
            sig(load.p99_ms),
            sig(load.cpu_ms_per_1000),
            mb(load.memory_after_bytes),
        );
    }
    if let Some(eco) = &v.eco {
        let compute = if v.load.is_some() {
            range(eco.compute_kwh, 1.0)
        } else {
            "not measured (no load run), so not in the total".to_owned()
        };
        let _ = writeln!(
            md,
            "\n**Eco estimate** (kWh over the scenario, low–high): transfer {}, storage {}, compute {compute}; \
             total {}, {} kg CO2e.",
            range(eco.transfer_kwh, 1.0),
            range(eco.storage_kwh, 1.0),
            range(eco.total_kwh, 1.0),
            range(eco.total_g_co2e, 1e-3),
        );
    }
    if let Some(budget) = v.budget.as_ref().filter(|b| !b.violations.is_empty()) {
        md.push_str("\n**Budget exceeded:**\n");
        for violation in &budget.violations {
            let _ = writeln!(md, "- {}", one_line(violation));
        }
    }
    md
}

fn bases_table(bases: &[BaseProvenance]) -> String {
    let mut md = String::from("| Base ARG | Requested | Used | Source |\n|---|---|---|---|\n");
    for base in bases {
        md.push_str(&row(&[
            code(&base.arg),
            code(&base.requested),
            code(&base.used),
            base_source(&base.source),
        ]));
    }
    md
}

/// Where a base came from, leaving no doubt when it is a stand-in rather than the public image.
fn base_source(source: &BaseSource) -> String {
    match source {
        BaseSource::Scratch => "none (`FROM scratch`)".to_owned(),
        BaseSource::Local {
            image_id,
            repo_digest,
        } => {
            format!(
                "public image, from the local image store ({})",
                image_ref(image_id, repo_digest.as_deref())
            )
        }
        BaseSource::Pulled {
            image_id,
            repo_digest,
        } => {
            format!(
                "public image, pulled for this run ({})",
                image_ref(image_id, repo_digest.as_deref())
            )
        }
        BaseSource::Recipe {
            recipe,
            description,
            image_id,
            toolchain,
        } => {
            let toolchain = toolchain
                .as_deref()
                .map(|t| format!("; toolchain {}", cell(t)))
                .unwrap_or_default();
            format!(
                "{STAND_IN_MARK} **local stand-in, NOT the public image**: recipe `{}` ({}{toolchain}), image `{}`",
                cell(recipe),
                cell(description),
                short_id(image_id),
            )
        }
    }
}

fn image_ref(image_id: &str, repo_digest: Option<&str>) -> String {
    match repo_digest {
        Some(digest) => format!("`{}`", cell(digest)),
        None => format!("image `{}`, no registry digest", short_id(image_id)),
    }
}

fn layers_table(layers: &[Layer]) -> String {
    let mut md = String::from(
        "| Layer (bottom first) | Size | Compressed | Files | Created by |\n|---:|---:|---:|---:|---|\n",
    );
    for (index, layer) in layers.iter().enumerate() {
        md.push_str(&row(&[
            (index + 1).to_string(),
            mb(layer.size_bytes),
            mb(layer.compressed_bytes),
            layer.file_count.to_string(),
            code(&truncate(&layer.created_by, COMMAND_WIDTH)),
        ]));
    }
    md
}

fn coefficients_table(report: &Report) -> String {
    let mut md = String::from(
        "### Coefficients\n\n| Coefficient | Value | Unit | Source |\n|---|---:|---|---|\n",
    );
    for c in &report.coefficients {
        md.push_str(&row(&[
            cell(&c.name),
            c.value.to_string(),
            cell(&c.unit),
            cell(&c.source),
        ]));
    }
    md
}

const MEASURED_VS_ESTIMATED: &str = "### Measured vs estimated\n\n\
    **Measured** on this host: image sizes and compressed sizes, layer sizes and file counts, image efficiency \
    (from the layer contents), build, cold-start and stop times, unpack time, idle and after-load memory, CPU \
    time under load, throughput and latency. **Estimated** with a model: pull time (compressed size over the \
    stated bandwidth), energy and CO2e (the coefficients above, whose low and high ends differ by ~60x, so \
    read the range rather than either end).\n";

/// The comparison in the terminal: one row per variant, then why any variant did not pass. Budget
/// violations are the caller's to print, as errors or warnings.
pub fn terminal_table(report: &Report) -> String {
    let baseline_size = baseline_image(report).map(|image| image.size_bytes);
    let mut table = Table::new();
    table.load_preset(presets::UTF8_FULL_CONDENSED).set_header([
        "Variant",
        "Outcome",
        "Size",
        "Compressed",
        "vs baseline",
        "Cold start (ms)",
        "Idle memory",
        "Req/s",
    ]);
    for v in &report.variants {
        let cells = std::iter::once(v.name.clone()).chain(summary_cells(v, baseline_size));
        table.add_row(cells.into_iter().enumerate().map(|(column, text)| {
            let cell = Cell::new(text);
            if column >= 2 {
                cell.set_alignment(CellAlignment::Right)
            } else {
                cell
            }
        }));
    }
    let mut out = table.to_string();
    out.push('\n');
    for v in &report.variants {
        if let Outcome::Failed { reason } | Outcome::Skipped { reason } = &v.outcome {
            let _ = writeln!(
                out,
                "{} {}: {}",
                v.name,
                outcome_word(&v.outcome),
                one_line(reason)
            );
        }
    }
    out
}

/// A bar chart of every measured image's size, uncompressed and compressed, on a log scale.
pub fn svg(report: &Report) -> anyhow::Result<String> {
    let bars: Vec<Bar> = report
        .variants
        .iter()
        .filter_map(|v| {
            v.image.as_ref().map(|i| Bar {
                size_mb: megabytes(i.size_bytes),
                compressed_mb: megabytes(i.compressed_bytes),
            })
        })
        .collect();
    let (low, high) = log_bounds(bars.iter().flat_map(|bar| [bar.size_mb, bar.compressed_mb]));
    let axis = VariantAxis {
        names: report
            .variants
            .iter()
            .filter(|v| v.image.is_some())
            .map(|v| v.name.clone())
            .collect(),
    };
    let caption = if bars.is_empty() {
        "Image size per variant: no image was measured"
    } else {
        "Image size per variant"
    };

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SVG_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(axis, (low..high).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("Variant")
            .y_desc("Size (MB = 10^6 bytes, log scale)")
            .y_label_formatter(&|y| format!("{y}"))
            .label_style(("sans-serif", 14))
            .draw()?;
        // Each variant's slot is one unit wide: the two bars take 0.38 each, side by side around its centre.
        let series: [(&str, RGBColor, f64, BarValue); 2] = [
            ("Uncompressed", UNCOMPRESSED_COLOR, 0.1, |bar| bar.size_mb),
            ("Compressed (pulled)", COMPRESSED_COLOR, 0.5, |bar| {
                bar.compressed_mb
            }),
        ];
        for (series, color, offset, value) in series {
            let rects = bars.iter().enumerate().map(move |(i, bar)| {
                Rectangle::new(
                    [
                        (i as f64 + offset, low),
                        (i as f64 + offset + 0.38, value(bar).max(low)),
                    ],
                    color.filled(),
                )
            });
            chart
                .draw_series(rects)?
                .label(series)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                });
            let labels = bars.iter().enumerate().map(|(i, bar)| {
                let style = ("sans-serif", 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom));
                Text::new(
                    sig(value(bar)),
                    (i as f64 + offset + 0.19, value(bar).max(low) * 1.1),
                    style,
                )
            });
            chart.draw_series(labels)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
        root.present()?;
    }
    Ok(out)
}

/// One variant's pair of bars, in decimal megabytes.
struct Bar {
    size_mb: f64,
    compressed_mb: f64,
}

/// Picks one of a [`Bar`]'s two values.
type BarValue = fn(&Bar) -> f64;

/// Log-axis bounds: a decade at least half a decade below the smallest positive value, so the shortest bar
/// stays visible, and one decade above the largest, so the value labels and the legend fit above the bars.
fn log_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let positive: Vec<f64> = values.filter(|v| *v > 0.0).collect();
    if positive.is_empty() {
        return (0.1, 10.0);
    }
    let min = positive.iter().copied().fold(f64::INFINITY, f64::min);
    let max = positive.iter().copied().fold(0.0, f64::max);
    (
        10f64.powf((min.log10() - 0.5).floor()),
        10f64.powf(max.log10().ceil() + 1.0),
    )
}

/// The chart's x axis: one unit-wide slot per variant, labelled with the variant's name at its centre.
struct VariantAxis {
    names: Vec<String>,
}

impl VariantAxis {
    fn width(&self) -> f64 {
        self.names.len().max(1) as f64
    }
}

impl Ranged for VariantAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        limit.0 + (value / self.width() * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.names.len()).map(|i| i as f64 + 0.5).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.width()
    }
}

impl ValueFormatter<f64> for VariantAxis {
    fn format_ext(&self, value: &f64) -> String {
        let index = value.floor();
        if index < 0.0 {
            String::new()
        } else {
            self.names.get(index as usize).cloned().unwrap_or_default()
        }
    }
}

fn baseline_image(report: &Report) -> Option<&Image> {
    report
        .variants
        .iter()
        .find(|v| v.name == report.baseline)
        .and_then(|v| v.image.as_ref())
}

fn uses_stand_in(v: &VariantReport) -> bool {
    v.bases
        .iter()
        .any(|b| matches!(b.source, BaseSource::Recipe { .. }))
}

fn variant_label(v: &VariantReport) -> String {
    if uses_stand_in(v) {
        format!("`{}` {STAND_IN_MARK}", v.name)
    } else {
        format!("`{}`", v.name)
    }
}

fn outcome_word(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "passed",
        Outcome::Failed { .. } => "failed",
        Outcome::Skipped { .. } => "skipped",
    }
}

/// How much smaller (or larger) `size` is than `baseline`: `1.0x`, `2.5x smaller`, `385x smaller`, `1.3x larger`.
pub fn ratio(size: u64, baseline: u64) -> String {
    if size == 0 || baseline == 0 {
        return "n/a".to_owned();
    }
    let factor = baseline as f64 / size as f64;
    if (0.95..1.05).contains(&factor) {
        "1.0x".to_owned()
    } else if factor > 1.0 {
        format!("{} smaller", times(factor))
    } else {
        format!("{} larger", times(1.0 / factor))
    }
}

fn times(factor: f64) -> String {
    if factor >= 10.0 {
        format!("{factor:.0}x")
    } else {
        format!("{factor:.1}x")
    }
}

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Decimal megabytes with about three significant digits, e.g. `0.512 MB`, `7.25 MB`, `1412.3 MB`.
pub fn mb(bytes: u64) -> String {
    let value = megabytes(bytes);
    if bytes == 0 {
        "0 MB".to_owned()
    } else if value >= 10.0 {
        format!("{value:.1} MB")
    } else if value >= 1.0 {
        format!("{value:.2} MB")
    } else if value >= 0.001 {
        format!("{value:.3} MB")
    } else {
        "<0.001 MB".to_owned()
    }
}

/// Three significant digits; whole numbers from 1,000 up, an exponent below 0.001.
fn sig(x: f64) -> String {
    let magnitude = x.abs();
    if x == 0.0 || !x.is_finite() {
        format!("{x}")
    } else if magnitude >= 1000.0 {
        format!("{x:.0}")
    } else if magnitude < 0.001 {
        format!("{x:.2e}")
    } else {
        let decimals = (2 - magnitude.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    }
}

/// `low–high`, each scaled by `factor` (e.g. 1e-3 for grams to kilograms); one number when they are equal,
/// and `low to high` when a negative sign would make the dash ambiguous (a saving that is really a cost).
fn range(r: Range, factor: f64) -> String {
    let (low, high) = (sig(r.low * factor), sig(r.high * factor));
    if low == high {
        low
    } else if r.low < 0.0 || r.high < 0.0 {
        format!("{low} to {high}")
    } else {
        format!("{low}–{high}")
    }
}

fn or_na(value: Option<String>) -> String {
    value.unwrap_or_else(|| "n/a".to_owned())
}

/// One Markdown table row.
fn row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

/// Text made safe for one table cell: a single line, pipes escaped, no raw HTML.
fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|").replace('<', "&lt;")
}

/// A table cell as inline code. GitHub unescapes `\|` even inside code spans in tables, so pipes stay
/// escaped; a backtick in the text needs a longer fence.
fn code(text: &str) -> String {
    let text = one_line(text).replace('|', "\\|");
    if text.is_empty() {
        String::new()
    } else if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

/// Collapses every run of whitespace, newlines included, into one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max` characters of the single-line `text`, ending in `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    let text = one_line(text);
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `sha256:` and the first 12 hex digits, as `docker images` shows an ID.
fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    format!("sha256:{}", hex.chars().take(12).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        BudgetCheck, Build, Check, Coefficient, EcoEstimate, Efficiency, Host, Load, Run,
        SCHEMA_VERSION, Scenario,
    };

    fn r(low: f64, high: f64) -> Range {
        Range { low, high }
    }

    fn eco(total: Range, g_co2e: Range, savings: Option<Range>) -> EcoEstimate {
        EcoEstimate {
            transfer_kwh: total,
            storage_kwh: r(0.0, 0.0),
            compute_kwh: r(0.0, 0.0),
            total_kwh: total,
            total_g_co2e: g_co2e,
            savings_kwh_vs_baseline: savings,
        }
    }

    fn variant(name: &str, outcome: Outcome) -> VariantReport {
        VariantReport {
            outcome,
            ..VariantReport::new(name, format!("eco-docker/{name}:latest"))
        }
    }

    fn image(size_bytes: u64, compressed_bytes: u64, layers: Vec<Layer>) -> Image {
        Image {
            id: "sha256:feedfacefeedface".into(),
            size_bytes,
            compressed_bytes,
            layers,
            efficiency: Efficiency {
                score: 0.99,
                wasted_bytes: 1_200_000,
                wasted_user_fraction: 0.034,
            },
            unpack_seconds: 1.234,
            pull_seconds_modelled: 20.0,
        }
    }

    fn measured(
        v: &mut VariantReport,
        cold_start_ms: f64,
        idle_memory_bytes: u64,
        requests_per_second: f64,
    ) {
        v.build = Some(Build {
            seconds: 12.5,
            cached_steps: 0,
            steps: 7,
            log: format!("logs/{}.log", v.name),
        });
        v.run = Some(Run {
            cold_start_ms,
            idle_memory_bytes,
            stop_ms: 110.0,
            exit_code: 0,
            checks: vec![Check {
                name: "GET /".into(),
                passed: true,
                detail: String::new(),
            }],
        });
        v.load = Some(Load {
            requests: 5000,
            concurrency: 16,
            errors: 0,
            seconds: 0.25,
            requests_per_second,
            p50_ms: 0.61,
            p99_ms: 2.4,
            cpu_ms_per_1000: 150.0,
            memory_after_bytes: 3_000_000,
        });
    }

    /// `standard` (baseline), `static` on a stand-in base and over budget, and a skipped `distroless`.
    fn sample() -> Report {
        let mut standard = variant("standard", Outcome::Passed);
        standard.bases = vec![BaseProvenance {
            arg: "RUST_IMAGE".into(),
            requested: "rust:1-trixie".into(),
            used: "rust:1-trixie".into(),
            source: BaseSource::Pulled {
                image_id: "sha256:0123456789abcdef".into(),
                repo_digest: Some("rust@sha256:abc".into()),
            },
        }];
        standard.image = Some(image(770_000_000, 250_000_000, vec![]));
        measured(&mut standard, 350.4, 12_345_678, 20_000.4);
        standard.eco = Some(eco(r(18.3, 1100.0), r(8_143.5, 489_400.0), None));

        let mut static_ = variant("static", Outcome::Passed);
        static_.bases = vec![BaseProvenance {
            arg: "RUST_IMAGE".into(),
            requested: "rust:1-trixie".into(),
            used: "eco-docker/stand-in-rust:local".into(),
            source: BaseSource::Recipe {
                recipe: "rust".into(),
                description: "Debian trixie with rustc from apt".into(),
                image_id: "sha256:99887766554433221100".into(),
                toolchain: Some("rustc 1.85.0".into()),
            },
        }];
        let layers = vec![
            Layer {
                diff_id: "sha256:aa".into(),
                tar_bytes: 2_010_000,
                size_bytes: 2_000_000,
                compressed_bytes: 800_000,
                file_count: 1,
                created_by: "COPY /out/app /app # buildkit".into(),
            },
            Layer {
                diff_id: "sha256:bb".into(),
                tar_bytes: 1024,
                size_bytes: 0,
                compressed_bytes: 32,
                file_count: 0,
                created_by: format!("RUN echo a | tr a b && {}", "x".repeat(100)),
            },
        ];
        static_.image = Some(image(2_000_000, 800_000, layers));
        measured(&mut static_, 40.2, 1_500_000, 25_000.0);
        static_.eco = Some(eco(r(0.06, 3.5), r(26.7, 1560.0), Some(r(18.2, 1096.4))));
        static_.budget = Some(BudgetCheck {
            max_size_bytes: Some(1_000_000),
            max_compressed_bytes: None,
            violations: vec!["static: size 2.00 MB exceeds the 1.00 MB budget".into()],
        });

        let distroless = variant(
            "distroless",
            Outcome::Skipped {
                reason: "base image gcr.io/distroless/cc unavailable | offline".into(),
            },
        );
        Report {
            schema_version: SCHEMA_VERSION,
            started_unix: 1_700_000_000,
            host: Host {
                docker_server_version: "27.5.1".into(),
                cpus: 8,
                os: "Debian GNU/Linux 13".into(),
                revision: "0123abc".into(),
            },
            scenario: Scenario {
                deploys_per_day: 10.0,
                nodes_per_deploy: 20.0,
                days: 365.0,
                grid_g_co2e_per_kwh: 445.0,
                bandwidth_mbit: 100.0,
                requests_per_day: 1_000_000.0,
            },
            baseline: "standard".into(),
            variants: vec![standard, static_, distroless],
            coefficients: vec![Coefficient {
                name: "network energy, low".into(),
                value: 0.001,
                unit: "kWh/GB".into(),
                source: "Cloud Carbon Footprint methodology".into(),
            }],
        }
    }

    #[test]
    fn comparison_table_has_exact_rows() {
        let md = markdown(&sample());
        for line in [
            "| Variant | Outcome | Size | Compressed | vs baseline | Cold start (ms) | Idle memory | Req/s | Energy (kWh, low–high) | CO2e (kg, low–high) | Saved vs baseline (kWh, low–high) |",
            "| `standard` | passed | 770.0 MB | 250.0 MB | 1.0x | 350 | 12.3 MB | 20000 | 18.3–1100 | 8.14–489 | n/a |",
            "| `static` ⚠️ | passed | 2.00 MB | 0.800 MB | 385x smaller | 40 | 1.50 MB | 25000 | 0.0600–3.50 | 0.0267–1.56 | 18.2–1096 |",
            "| `distroless` | skipped | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |",
        ] {
            assert!(md.lines().any(|l| l == line), "missing line {line}\n{md}");
        }
        assert!(md.starts_with("## eco-docker: can a smaller image be more eco-efficient?\n\nScenario: 10 deploys/day × 20 nodes × 365 days, 1000000 requests/day per container, grid 445 gCO2e/kWh, pulls modelled at 100 Mbit/s;"));
    }

    #[test]
    fn skipped_variant_renders_its_reason() {
        let md = markdown(&sample());
        assert!(
            md.contains(
                "\n- `distroless` skipped: base image gcr.io/distroless/cc unavailable | offline\n"
            ),
            "{md}"
        );
        assert!(md.contains(
            "Tag `eco-docker/distroless:latest`: **skipped**: base image gcr.io/distroless/cc"
        ));
    }

    #[test]
    fn stand_in_base_is_unmistakable() {
        let md = markdown(&sample());
        assert!(md.contains(
            "| `RUST_IMAGE` | `rust:1-trixie` | `eco-docker/stand-in-rust:local` | ⚠️ **local stand-in, NOT the public image**: recipe `rust` (Debian trixie with rustc from apt; toolchain rustc 1.85.0), image `sha256:998877665544` |"
        ), "{md}");
        assert!(md.contains("| `RUST_IMAGE` | `rust:1-trixie` | `rust:1-trixie` | public image, pulled for this run (`rust@sha256:abc`) |"));
        assert!(md.contains("- ⚠️ built on a local stand-in for a public base image"));
    }

    #[test]
    fn layer_rows_truncate_and_escape_commands() {
        let md = markdown(&sample());
        assert!(
            md.contains("| 1 | 2.00 MB | 0.800 MB | 1 | `COPY /out/app /app # buildkit` |"),
            "{md}"
        );
        let long = md
            .lines()
            .find(|l| l.starts_with("| 2 | 0 MB | <0.001 MB | 0 | `RUN echo a \\| tr a b && x"))
            .expect(&md);
        let command = long
            .split(" | `")
            .nth(1)
            .unwrap()
            .trim_end_matches("` |")
            .replace("\\|", "|");
        assert_eq!(command.chars().count(), COMMAND_WIDTH);
        assert!(command.ends_with('…'));
    }

    #[test]
    fn details_state_what_is_measured_and_modelled() {
        let md = markdown(&sample());
        for part in [
            "**Image efficiency:** score 0.9900 (dive's metric), 1.20 MB wasted (3.4% of the bytes above the first layer).",
            "**Deploy cost:** unpack 1.23 s (measured), pull 20.0 s (modelled at 100 Mbit/s).",
            "**Runtime under load** (5000 requests, 16 concurrent, 0 errors): 25000 req/s, p50 0.610 ms, p99 2.40 ms, 150 CPU ms per 1,000 requests, memory 1.50 MB idle → 3.00 MB after.",
            "- static: size 2.00 MB exceeds the 1.00 MB budget",
            "| network energy, low | 0.001 | kWh/GB | Cloud Carbon Footprint methodology |",
            "### Measured vs estimated",
        ] {
            assert!(md.contains(part), "missing {part}\n{md}");
        }
    }

    #[test]
    fn energy_without_load_says_compute_is_missing() {
        let mut report = sample();
        report.variants[1].load = None;
        let md = markdown(&report);
        assert!(
            md.contains("compute not measured (no load run), so not in the total"),
            "{md}"
        );
        assert!(md.contains("- Energy without a load run covers transfer and storage only"));
    }

    #[test]
    fn ratios_read_naturally() {
        assert_eq!(ratio(770, 770), "1.0x");
        assert_eq!(ratio(2_000_000, 770_000_000), "385x smaller");
        assert_eq!(ratio(400, 1000), "2.5x smaller");
        assert_eq!(ratio(1300, 1000), "1.3x larger");
        assert_eq!(ratio(20_000, 1000), "20x larger");
        assert_eq!(ratio(0, 1000), "n/a");
    }

    #[test]
    fn sizes_are_decimal_megabytes() {
        assert_eq!(mb(0), "0 MB");
        assert_eq!(mb(999), "<0.001 MB");
        assert_eq!(mb(512_000), "0.512 MB");
        assert_eq!(mb(7_250_000), "7.25 MB");
        assert_eq!(mb(1_412_345_678), "1412.3 MB");
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(sig(36.5), "36.5");
        assert_eq!(sig(0.015768), "0.0158");
        assert_eq!(sig(2190.4), "2190");
        assert_eq!(sig(0.000_031_5), "3.15e-5");
        assert_eq!(sig(-4.38), "-4.38");
        assert_eq!(range(r(2.0, 2.0), 1.0), "2.00");
        assert_eq!(range(r(-0.05, -3.0), 1.0), "-0.0500 to -3.00");
        assert_eq!(range(r(1500.0, 90_000.0), 1e-3), "1.50–90.0");
    }

    #[test]
    fn svg_draws_every_measured_variant() {
        let svg = svg(&sample()).unwrap();
        assert!(svg.contains("<svg"));
        assert!(
            svg.lines().any(|l| l == "standard") && svg.lines().any(|l| l == "static"),
            "{svg}"
        );
        assert!(!svg.contains("distroless"));
        assert!(svg.contains("Uncompressed") && svg.contains("Compressed (pulled)"));
    }

    #[test]
    fn svg_without_images_still_renders() {
        let mut report = sample();
        report.variants.retain(|v| v.image.is_none());
        assert!(svg(&report).unwrap().contains("no image was measured"));
    }

    #[test]
    fn terminal_table_lists_rows_and_reasons() {
        let table = terminal_table(&sample());
        assert!(table.contains("385x smaller"), "{table}");
        assert!(
            table.contains(
                "distroless skipped: base image gcr.io/distroless/cc unavailable | offline"
            )
        );
        assert!(!table.contains("budget"), "{table}");
    }

    #[test]
    fn write_all_leaves_exactly_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("eco-report");
        let report = sample();
        write_all(&report, &out).unwrap();
        write_all(&report, &out).unwrap();
        let mut names: Vec<String> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["report.json", "report.md", "sizes.svg"]);
        let json: Report =
            serde_json::from_str(&fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
        assert_eq!(json.variants.len(), 3);
        assert_eq!(
            fs::read_to_string(out.join("report.md")).unwrap(),
            markdown(&report)
        );
    }
}
