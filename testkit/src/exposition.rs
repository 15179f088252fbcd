//! Checks of a Prometheus text exposition (`/metrics`) with a real parser (openmetrics-parser's
//! Prometheus text grammar): the whole text must parse, every family must have HELP and TYPE, and
//! every histogram must have its buckets (ending at `+Inf`), its sum and its count.

use std::collections::BTreeSet;

use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{PrometheusType, PrometheusValue};

/// One metric family as exposed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Family {
    /// The family name (for counters, with `_total`).
    pub name: String,
    /// `counter`, `gauge`, `histogram`, `summary`.
    pub kind: String,
    /// Label names, sorted (`le` of histogram buckets not included).
    pub labels: BTreeSet<String>,
    /// How many series (label sets) it has.
    pub series: usize,
}

/// Parses `text` and checks it (see the module doc); panics naming the first problem. Returns the
/// families sorted by name.
pub fn check(text: &str) -> Vec<Family> {
    let exposition =
        parse_prometheus(text).unwrap_or_else(|e| panic!("not a Prometheus text exposition: {e:?}\n{text}"));
    let mut families = Vec::new();
    for (name, f) in &exposition.families {
        assert!(!f.help.trim().is_empty(), "{name}: no HELP\n{text}");
        let kind = match f.family_type {
            PrometheusType::Counter => "counter",
            PrometheusType::Gauge => "gauge",
            PrometheusType::Histogram => "histogram",
            PrometheusType::Summary => "summary",
            PrometheusType::Unknown => panic!("{name}: no TYPE\n{text}"),
        };
        let mut series = 0;
        for s in f.iter_samples() {
            series += 1;
            if let PrometheusValue::Histogram(h) = &s.value {
                assert!(!h.buckets.is_empty(), "{name}: a histogram without buckets\n{text}");
                let last = h.buckets.last().unwrap();
                assert!(last.upper_bound.is_infinite(), "{name}: no +Inf bucket\n{text}");
                let count = h
                    .count
                    .unwrap_or_else(|| panic!("{name}: a histogram without _count\n{text}"));
                assert!(h.sum.is_some(), "{name}: a histogram without _sum\n{text}");
                assert_eq!(
                    last.count.as_f64() as u64,
                    count,
                    "{name}: the +Inf bucket differs from _count"
                );
                assert!(
                    h.buckets.windows(2).all(|w| w[0].count.as_f64() <= w[1].count.as_f64()),
                    "{name}: buckets are not cumulative"
                );
            }
        }
        families.push(Family {
            name: name.clone(),
            kind: kind.into(),
            labels: f.get_label_names().iter().filter(|l| *l != "le").cloned().collect(),
            series,
        });
    }
    families.sort();
    families
}

/// The metrics a markdown table documents: rows `| name | type | labels | ... |` whose name (in
/// backquotes) starts with `prefix`; labels are backquoted and comma-separated, `-` for none.
pub fn documented(markdown: &str, prefix: &str) -> Vec<(String, String, BTreeSet<String>)> {
    let mut out = Vec::new();
    for line in markdown.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 {
            continue;
        }
        let name = cells[1].trim_matches('`');
        if !name.starts_with(prefix) {
            continue;
        }
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_string())
            .filter(|l| !l.is_empty() && l != "-")
            .collect();
        out.push((name.to_string(), cells[2].to_string(), labels));
    }
    out.sort();
    out
}
