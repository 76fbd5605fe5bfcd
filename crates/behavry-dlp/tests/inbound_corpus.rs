//! Precision and recall of the injection scanner on the labelled corpora in
//! `tests/corpus/inbound.jsonl` (tool results: web pages, e-mails, issues,
//! chat, rows, logs, search results) and `tests/corpus/tools.jsonl` (MCP
//! tool definitions), both built by `tests/corpus/generate_inbound.py`.
//!
//! Hard negatives are the point of both: text that uses the trigger words
//! innocently ("you are now logged in", "ignore this e-mail", HTML comments,
//! `</s>` strikethrough, flag emoji made of tag characters), placed in the
//! same carriers as the injections.
//!
//! Three figures per corpus: detection (anything reported vs a label other
//! than clean), blocking (critical, what the gateway withholds by default)
//! and, for tools, poisoning (high or above, what is withheld). The
//! figures are printed (`cargo test -p behavry-dlp --test inbound_corpus --
//! --nocapture`) and must not fall below the floors asserted here.

use behavry_dlp::{InjectionScanner, Severity, worst};
use serde_json::Value;

#[derive(Default, Debug)]
struct Counts {
    tp: u32,
    fp: u32,
    fn_: u32,
}

impl Counts {
    fn add(&mut self, expected: bool, found: bool) {
        match (expected, found) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            (false, false) => {}
        }
    }

    fn precision(&self) -> f64 {
        f64::from(self.tp) / f64::from((self.tp + self.fp).max(1))
    }

    fn recall(&self) -> f64 {
        f64::from(self.tp) / f64::from((self.tp + self.fn_).max(1))
    }
}

fn verdict(label: &str) -> Option<Severity> {
    match label {
        "clean" => None,
        other => Some(other.parse().expect("corpus verdict")),
    }
}

fn lines(corpus: &str) -> Vec<Value> {
    corpus
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("corpus line is JSON"))
        .collect()
}

#[test]
fn results_corpus() {
    let scanner = InjectionScanner::new();
    let cases = lines(include_str!("corpus/inbound.jsonl"));
    assert!(cases.len() >= 300);
    let (mut detect, mut block) = (Counts::default(), Counts::default());
    let mut exact = 0;
    let mut misses = Vec::new();
    for case in &cases {
        let expected = verdict(case["verdict"].as_str().expect("verdict"));
        let found = worst(&scanner.scan_text(case["text"].as_str().expect("text")));
        detect.add(expected.is_some(), found.is_some());
        block.add(
            expected == Some(Severity::Critical),
            found == Some(Severity::Critical),
        );
        if expected == found {
            exact += 1;
        } else {
            misses.push(format!(
                "{}: expected {expected:?}, found {found:?}",
                case["id"]
            ));
        }
    }
    println!("tool results: {} cases", cases.len());
    println!(
        "  detection  precision {:.3} recall {:.3} ({detect:?})",
        detect.precision(),
        detect.recall()
    );
    println!(
        "  critical   precision {:.3} recall {:.3} ({block:?})",
        block.precision(),
        block.recall()
    );
    println!("  exact severity {exact}/{}", cases.len());
    for m in &misses {
        println!("  {m}");
    }
    assert!(detect.precision() >= FLOOR.0, "detection precision");
    assert!(detect.recall() >= FLOOR.1, "detection recall");
    assert!(block.precision() >= FLOOR.2, "critical precision");
}

#[test]
fn tools_corpus() {
    let scanner = InjectionScanner::new();
    let cases = lines(include_str!("corpus/tools.jsonl"));
    assert!(cases.len() >= 80);
    let mut poisoned = Counts::default();
    let mut misses = Vec::new();
    for case in &cases {
        let expected = case["poisoned"].as_bool().expect("poisoned");
        let found = worst(&scanner.scan_tool(&case["tool"])).is_some_and(|w| w >= Severity::High);
        poisoned.add(expected, found);
        if expected != found {
            misses.push(format!(
                "{}: expected {expected}, found {found}",
                case["id"]
            ));
        }
    }
    println!("tool definitions: {} cases", cases.len());
    println!(
        "  poisoned   precision {:.3} recall {:.3} ({poisoned:?})",
        poisoned.precision(),
        poisoned.recall()
    );
    for m in &misses {
        println!("  {m}");
    }
    assert!(poisoned.precision() >= TOOL_FLOOR.0, "poisoning precision");
    assert!(poisoned.recall() >= TOOL_FLOOR.1, "poisoning recall");
}

/// Detection precision, detection recall, critical precision: a little
/// under the figures measured when the rules last changed (1.000, 0.943,
/// 0.977), so that a rule change that costs accuracy fails here. Critical
/// recall (0.544) is printed but not held: the scanner rates many
/// labelled-critical results high (delivered, session tainted), which errs
/// towards not withholding.
const FLOOR: (f64, f64, f64) = (0.98, 0.92, 0.95);
/// Poisoning precision and recall (measured 1.000 and 0.811).
const TOOL_FLOOR: (f64, f64) = (0.98, 0.78);
