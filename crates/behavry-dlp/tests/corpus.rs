//! Precision and recall of the outbound detectors on the labelled corpus in
//! `tests/corpus/outbound.jsonl` (built by `tests/corpus/generate.py`):
//! positives in realistic contexts (JSON arguments, SQL, shell, logs, .env,
//! YAML, prose, base64, URL encoding) and hard negatives (Luhn failures,
//! wrong IBAN check digits, out-of-range SSNs, digests, UUIDs,
//! placeholders).
//!
//! Every line is scanned with the low-severity detectors on; a detector
//! that fires on a line not labelled with it is a false positive, a label
//! that no finding matches is a false negative. The figures are printed
//! (`cargo test -p behavry-dlp --test corpus -- --nocapture`) and must stay
//! at or above 0.98.

use std::collections::{BTreeMap, BTreeSet};

use behavry_dlp::Scanner;
use serde_json::Value;

#[derive(Default)]
struct Counts {
    tp: u32,
    fp: u32,
    fn_: u32,
}

#[test]
fn outbound_detectors_meet_precision_and_recall() {
    let scanner = Scanner::builder(b"corpus").include_low(true).build();
    let corpus = include_str!("corpus/outbound.jsonl");
    let mut per: BTreeMap<String, Counts> = BTreeMap::new();
    let mut misses = Vec::new();
    let mut lines = 0;
    for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
        lines += 1;
        let case: Value = serde_json::from_str(line).expect("corpus line is JSON");
        let text = case["text"].as_str().expect("text");
        let expected: BTreeSet<String> = case["expect"]
            .as_array()
            .expect("expect")
            .iter()
            .map(|v| v.as_str().expect("label").to_owned())
            .collect();
        let findings = if case["context"] == "json" {
            scanner.scan_json(&serde_json::from_str(text).expect("json case parses"))
        } else {
            scanner.scan_text(text)
        };
        let found: BTreeSet<String> = findings.into_iter().map(|f| f.pattern).collect();
        for label in expected.union(&found) {
            let c = per.entry(label.clone()).or_default();
            match (expected.contains(label), found.contains(label)) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (true, false) => c.fn_ += 1,
                (false, false) => {}
            }
        }
        if expected != found {
            misses.push(format!(
                "{}: expected {expected:?}, found {found:?}",
                case["id"]
            ));
        }
    }
    let (tp, fp, fn_) = per
        .values()
        .fold((0, 0, 0), |(a, b, c), x| (a + x.tp, b + x.fp, c + x.fn_));
    let precision = f64::from(tp) / f64::from(tp + fp).max(1.0);
    let recall = f64::from(tp) / f64::from(tp + fn_).max(1.0);
    println!("{lines} lines; detector | TP | FP | FN");
    for (label, c) in &per {
        println!("{label} | {} | {} | {}", c.tp, c.fp, c.fn_);
    }
    println!("precision {precision:.4}, recall {recall:.4}");
    for m in &misses {
        println!("MISS {m}");
    }
    assert!(lines >= 500, "the corpus is missing or truncated");
    assert!(
        precision >= 0.98 && recall >= 0.98,
        "precision {precision:.4}, recall {recall:.4}; misses:\n{}",
        misses.join("\n")
    );
}
