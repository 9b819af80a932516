//! The eco model: energy and CO2e of shipping, storing and running each variant over a [`Scenario`].
//!
//! Three terms, each priced with the lowest and the highest published coefficient, because the literature
//! disagrees by ~60x on the energy of moving a gigabyte:
//!
//! - **transfer**: every node pulls the compressed image on every deploy;
//! - **storage**: the registry keeps one copy of the compressed layers (replicated) for the whole period;
//! - **compute**: the CPU time measured under load, scaled to the scenario's requests.
//!
//! Units are decimal: GB = 10^9 bytes, TB = 10^12 bytes. Data-centre overhead (PUE), embodied emissions and
//! the energy of building the image are left out: the question is what the image's size changes.

use crate::model::{Coefficient, EcoEstimate, Image, Load, Range, Scenario, VariantReport};

const BYTES_PER_GB: f64 = 1e9;
const BYTES_PER_TB: f64 = 1e12;
const HOURS_PER_DAY: f64 = 24.0;
const WH_PER_KWH: f64 = 1e3;
const JOULES_PER_KWH: f64 = 3.6e6;

/// One coefficient of the model with its unit and published source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub source: &'static str,
}

const NETWORK_LOW: Spec = Spec {
    name: "network energy, low",
    value: 0.001,
    unit: "kWh/GB",
    source: "Cloud Carbon Footprint methodology (networking coefficient)",
};
const NETWORK_REFERENCE: Spec = Spec {
    name: "network energy, reference (not used in the range)",
    value: 0.041,
    unit: "kWh/GB",
    source: "Green Metrics Tool (Green Coding), after Coroamă 2021",
};
const NETWORK_HIGH: Spec = Spec {
    name: "network energy, high",
    value: 0.06,
    unit: "kWh/GB",
    source: "Aslan et al. 2018, Electricity Intensity of Internet Data Transmission (value for 2015)",
};
const STORAGE: Spec = Spec {
    name: "SSD storage energy",
    value: 1.2,
    unit: "Wh/TB-hour",
    source: "Cloud Carbon Footprint methodology (SSD storage coefficient)",
};
const REPLICATION: Spec = Spec {
    name: "registry storage replication factor",
    value: 3.0,
    unit: "copies",
    source: "Cloud Carbon Footprint methodology (replication factor of object storage)",
};
const COMPUTE_LOW: Spec = Spec {
    name: "compute power, low",
    value: 0.74,
    unit: "W/vCPU",
    source: "Cloud Carbon Footprint methodology (AWS average minimum watts per vCPU, idle)",
};
const COMPUTE_HIGH: Spec = Spec {
    name: "compute power, high",
    value: 3.5,
    unit: "W/vCPU",
    source: "Cloud Carbon Footprint methodology (AWS average maximum watts per vCPU)",
};
const GRID_DEFAULT: Spec = Spec {
    name: "grid carbon intensity",
    value: 445.0,
    unit: "gCO2e/kWh",
    source: "IEA 2024 world average, as used by the Green Metrics Tool",
};

/// Every coefficient of the model: the one place its numbers live.
pub const COEFFICIENTS: [Spec; 8] = [
    NETWORK_LOW,
    NETWORK_REFERENCE,
    NETWORK_HIGH,
    STORAGE,
    REPLICATION,
    COMPUTE_LOW,
    COMPUTE_HIGH,
    GRID_DEFAULT,
];

/// The coefficients as the report lists them, with the grid intensity the scenario really used.
pub fn coefficients(scenario: &Scenario) -> Vec<Coefficient> {
    COEFFICIENTS
        .iter()
        .map(|spec| {
            let mut coefficient = Coefficient {
                name: spec.name.to_owned(),
                value: spec.value,
                unit: spec.unit.to_owned(),
                source: spec.source.to_owned(),
            };
            if spec.name == GRID_DEFAULT.name && scenario.grid_g_co2e_per_kwh != GRID_DEFAULT.value
            {
                coefficient.value = scenario.grid_g_co2e_per_kwh;
                coefficient.source = format!(
                    "set for this run (default {}: {})",
                    GRID_DEFAULT.value, GRID_DEFAULT.source
                );
            }
            coefficient
        })
        .collect()
}

/// Estimates one variant's energy and CO2e over the scenario; `savings_kwh_vs_baseline` is left `None`
/// for [`fill_savings`].
///
/// Without a load measurement the compute term is zero and the total covers transfer and storage only:
/// the report says so next to the figures.
pub fn estimate(image: &Image, load: Option<&Load>, scenario: &Scenario) -> EcoEstimate {
    let transfer_kwh = transfer_kwh(image.compressed_bytes, scenario);
    let storage_kwh = storage_kwh(image.compressed_bytes, scenario);
    let compute_kwh = load.map_or(
        Range {
            low: 0.0,
            high: 0.0,
        },
        |load| compute_kwh(load, scenario),
    );
    let total_kwh = Range {
        low: transfer_kwh.low + storage_kwh.low + compute_kwh.low,
        high: transfer_kwh.high + storage_kwh.high + compute_kwh.high,
    };
    EcoEstimate {
        transfer_kwh,
        storage_kwh,
        compute_kwh,
        total_kwh,
        total_g_co2e: scale(total_kwh, scenario.grid_g_co2e_per_kwh),
        savings_kwh_vs_baseline: None,
    }
}

/// Every node pulls the compressed image on every deploy.
pub fn transfer_kwh(compressed_bytes: u64, scenario: &Scenario) -> Range {
    let gb = compressed_bytes as f64 / BYTES_PER_GB
        * scenario.deploys_per_day
        * scenario.nodes_per_deploy
        * scenario.days;
    Range {
        low: gb * NETWORK_LOW.value,
        high: gb * NETWORK_HIGH.value,
    }
}

/// The registry keeps one replicated copy of the compressed layers for the whole scenario; older tags and
/// layers shared with other images are not counted. Storage has a single coefficient, so low = high.
pub fn storage_kwh(compressed_bytes: u64, scenario: &Scenario) -> Range {
    let tb_hours =
        compressed_bytes as f64 / BYTES_PER_TB * REPLICATION.value * HOURS_PER_DAY * scenario.days;
    let kwh = tb_hours * STORAGE.value / WH_PER_KWH;
    Range {
        low: kwh,
        high: kwh,
    }
}

/// CPU time spent serving the scenario's requests, priced as one vCPU at idle (low) and maximum (high)
/// power. Cold starts and idle time between requests are left out.
pub fn compute_kwh(load: &Load, scenario: &Scenario) -> Range {
    let cpu_seconds =
        load.cpu_ms_per_1000 / 1000.0 / 1000.0 * scenario.requests_per_day * scenario.days;
    Range {
        low: cpu_seconds * COMPUTE_LOW.value / JOULES_PER_KWH,
        high: cpu_seconds * COMPUTE_HIGH.value / JOULES_PER_KWH,
    }
}

/// What `this` saves against `baseline`, each end with its own end: positive means `this` uses less.
pub fn savings(baseline: &EcoEstimate, this: &EcoEstimate) -> Range {
    Range {
        low: baseline.total_kwh.low - this.total_kwh.low,
        high: baseline.total_kwh.high - this.total_kwh.high,
    }
}

/// Fills every variant's savings against the variant named `baseline`: `None` for the baseline itself,
/// and for everyone when the baseline has no estimate (it failed or was skipped).
pub fn fill_savings(variants: &mut [VariantReport], baseline: &str) {
    let reference = variants
        .iter()
        .find(|v| v.name == baseline)
        .and_then(|v| v.eco);
    for variant in variants.iter_mut() {
        let is_baseline = variant.name == baseline;
        if let Some(eco) = variant.eco.as_mut() {
            eco.savings_kwh_vs_baseline = match reference {
                Some(reference) if !is_baseline => Some(savings(&reference, eco)),
                _ => None,
            };
        }
    }
}

/// Modelled seconds to pull `compressed_bytes` over a `bandwidth_mbit` Mbit/s link (10^6 bit/s), ignoring
/// latency, registry round trips and decompression (measured separately as unpack time).
pub fn pull_seconds(compressed_bytes: u64, bandwidth_mbit: f64) -> f64 {
    compressed_bytes as f64 * 8.0 / (bandwidth_mbit * 1e6)
}

fn scale(range: Range, factor: f64) -> Range {
    Range {
        low: range.low * factor,
        high: range.high * factor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Efficiency;

    fn scenario() -> Scenario {
        Scenario {
            deploys_per_day: 10.0,
            nodes_per_deploy: 20.0,
            days: 365.0,
            grid_g_co2e_per_kwh: 445.0,
            bandwidth_mbit: 100.0,
            requests_per_day: 1_000_000.0,
        }
    }

    fn image(compressed_bytes: u64) -> Image {
        Image {
            id: "sha256:0".into(),
            size_bytes: compressed_bytes * 2,
            compressed_bytes,
            layers: vec![],
            efficiency: Efficiency {
                score: 1.0,
                wasted_bytes: 0,
                wasted_user_fraction: 0.0,
            },
            unpack_seconds: 0.0,
            pull_seconds_modelled: 0.0,
        }
    }

    fn load(cpu_ms_per_1000: f64) -> Load {
        Load {
            requests: 5000,
            concurrency: 16,
            errors: 0,
            seconds: 1.0,
            requests_per_second: 5000.0,
            p50_ms: 1.0,
            p99_ms: 2.0,
            cpu_ms_per_1000,
            memory_after_bytes: 0,
        }
    }

    fn assert_close(actual: f64, expected: f64) {
        let tolerance = 1e-9 * expected.abs().max(1e-12);
        assert!(
            (actual - expected).abs() <= tolerance,
            "{actual} != {expected}"
        );
    }

    fn assert_range(actual: Range, low: f64, high: f64) {
        assert_close(actual.low, low);
        assert_close(actual.high, high);
    }

    #[test]
    fn transfer_prices_every_pull() {
        // 500 MB = 0.5 GB × 10 deploys × 20 nodes × 365 days = 36,500 GB;
        // × 0.001 kWh/GB = 36.5 kWh, × 0.06 kWh/GB = 2,190 kWh.
        assert_range(transfer_kwh(500_000_000, &scenario()), 36.5, 2190.0);
    }

    #[test]
    fn storage_prices_one_replicated_copy() {
        // 500 MB = 0.0005 TB × 3 copies × 24 h × 365 days = 13.14 TB-hours; × 1.2 Wh = 15.768 Wh = 0.015768 kWh.
        assert_range(storage_kwh(500_000_000, &scenario()), 0.015768, 0.015768);
    }

    #[test]
    fn compute_prices_cpu_seconds() {
        // 200 ms per 1,000 requests = 0.0002 s per request × 1,000,000 requests × 365 days = 73,000 CPU-s;
        // × 0.74 W = 54,020 J = 0.015005… kWh; × 3.5 W = 255,500 J = 0.070972… kWh.
        assert_range(
            compute_kwh(&load(200.0), &scenario()),
            54_020.0 / 3.6e6,
            255_500.0 / 3.6e6,
        );
    }

    #[test]
    fn estimate_sums_the_terms_and_prices_co2e() {
        // Transfer 36.5–2,190, storage 0.015768, compute 54,020/3.6e6–255,500/3.6e6 kWh (see above).
        let eco = estimate(&image(500_000_000), Some(&load(200.0)), &scenario());
        let low = 36.5 + 0.015768 + 54_020.0 / 3.6e6;
        let high = 2190.0 + 0.015768 + 255_500.0 / 3.6e6;
        assert_range(eco.total_kwh, low, high);
        assert_range(eco.total_g_co2e, low * 445.0, high * 445.0);
        assert_eq!(eco.savings_kwh_vs_baseline, None);
    }

    #[test]
    fn no_load_means_no_compute_term() {
        // 1 MB: transfer 0.001 GB × 73,000 = 73 GB → 0.073–4.38 kWh; storage 0.000001 TB × 26,280 h × 1.2 Wh.
        let eco = estimate(&image(1_000_000), None, &scenario());
        assert_range(eco.compute_kwh, 0.0, 0.0);
        let storage = 0.000_001 * 3.0 * 24.0 * 365.0 * 1.2 / 1000.0;
        assert_range(eco.total_kwh, 0.073 + storage, 4.38 + storage);
    }

    #[test]
    fn savings_pair_each_end_with_its_own() {
        let scenario = scenario();
        let mut variants: Vec<VariantReport> = [
            ("standard", 500_000_000),
            ("static", 1_000_000),
            ("broken", 0),
        ]
        .into_iter()
        .map(|(name, bytes)| VariantReport {
            name: name.into(),
            tag: format!("eco-docker/{name}:latest"),
            outcome: crate::model::Outcome::Passed,
            bases: vec![],
            build: None,
            image: None,
            run: None,
            load: None,
            eco: (bytes > 0).then(|| estimate(&image(bytes), None, &scenario)),
            budget: None,
        })
        .collect();
        fill_savings(&mut variants, "standard");
        // Transfer only differs from storage by scale: low = (36.5 − 0.073) + (storage 500 MB − storage 1 MB).
        let storage = |tb: f64| tb * 3.0 * 24.0 * 365.0 * 1.2 / 1000.0;
        let saved_storage = storage(0.0005) - storage(0.000_001);
        let saved = variants[1].eco.unwrap().savings_kwh_vs_baseline.unwrap();
        assert_range(
            saved,
            36.5 - 0.073 + saved_storage,
            2190.0 - 4.38 + saved_storage,
        );
        assert_eq!(variants[0].eco.unwrap().savings_kwh_vs_baseline, None);
        assert!(variants[2].eco.is_none());
    }

    #[test]
    fn no_baseline_estimate_means_no_savings() {
        let scenario = scenario();
        let mut variants = vec![VariantReport {
            name: "static".into(),
            tag: "eco-docker/static:latest".into(),
            outcome: crate::model::Outcome::Passed,
            bases: vec![],
            build: None,
            image: None,
            run: None,
            load: None,
            eco: Some(estimate(&image(1_000_000), None, &scenario)),
            budget: None,
        }];
        fill_savings(&mut variants, "standard");
        assert_eq!(variants[0].eco.unwrap().savings_kwh_vs_baseline, None);
    }

    #[test]
    fn pull_time_is_bits_over_bandwidth() {
        // 125 MB × 8 = 1,000 Mbit at 100 Mbit/s = 10 s.
        assert_close(pull_seconds(125_000_000, 100.0), 10.0);
    }

    #[test]
    fn coefficient_table_reports_the_grid_in_use() {
        let default = coefficients(&scenario());
        assert_eq!(default.len(), COEFFICIENTS.len());
        assert!(default.iter().all(|c| !c.source.is_empty()));
        let grid = |list: &[Coefficient]| {
            list.iter()
                .find(|c| c.unit == "gCO2e/kWh")
                .cloned()
                .unwrap()
        };
        assert_eq!(grid(&default).value, 445.0);
        assert!(grid(&default).source.starts_with("IEA 2024"));
        let custom = coefficients(&Scenario {
            grid_g_co2e_per_kwh: 56.0,
            ..scenario()
        });
        assert_eq!(grid(&custom).value, 56.0);
        assert!(
            grid(&custom)
                .source
                .starts_with("set for this run (default 445")
        );
    }
}
