//! `behavry scan`: the data-protection scanner on files or standard input,
//! for trying patterns and for CI pipelines.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use behavry_dlp::{Finding, Scanner, Severity};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use super::GlobalArgs;

#[derive(Args)]
pub struct ScanArgs {
    /// File to scan; `-` or nothing reads standard input.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// One document per line; prints one line of findings per input line.
    #[arg(long)]
    jsonl: bool,
    /// How to read each document: as JSON (every string is scanned, with its
    /// JSON Pointer), as plain text, or JSON when it parses.
    #[arg(long, value_enum, default_value = "auto")]
    format: Format,
    /// Exit with status 1 when a finding at or above this severity is found.
    #[arg(long, value_name = "SEVERITY", default_value = "high")]
    fail_on: Severity,
    /// Also run the low-severity detectors (e-mail, phone, IP addresses).
    #[arg(long)]
    include_low: bool,
    /// Print the input with every finding replaced by
    /// `[redacted:{category}]` instead of the findings.
    #[arg(long)]
    redact: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Auto,
    Json,
    Text,
}

/// Exit status for unusable input, distinct from "found something" (1).
const INPUT_ERROR: u8 = 2;

pub fn execute(global: &GlobalArgs, args: ScanArgs) -> Result<ExitCode> {
    let scanner = Scanner::builder(&fingerprint_key(global))
        .include_low(args.include_low)
        .build();
    let input = match read_input(args.file.as_ref()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(INPUT_ERROR));
        }
    };
    let mut out = std::io::stdout().lock();
    let mut worst: Option<Severity> = None;
    let documents: Vec<&str> = if args.jsonl {
        input.lines().collect()
    } else {
        vec![input.as_str()]
    };
    for (i, doc) in documents.iter().enumerate() {
        let (findings, redacted) = match scan(&scanner, doc, args.format, args.redact) {
            Ok(r) => r,
            Err(e) => {
                let at = if args.jsonl {
                    format!("line {}: ", i + 1)
                } else {
                    String::new()
                };
                eprintln!("error: {at}{e}");
                return Ok(ExitCode::from(INPUT_ERROR));
            }
        };
        worst = worst.max(findings.iter().map(|f| f.severity).max());
        let line = match (args.redact, args.jsonl) {
            (true, _) => redacted,
            (false, true) => json!({"line": i + 1, "findings": findings}).to_string(),
            (false, false) => serde_json::to_string_pretty(&json!({
                "findings": findings,
                "max_severity": findings.iter().map(|f| f.severity).max(),
            }))?,
        };
        // A redacted text keeps its own line ending.
        let end = if line.ends_with('\n') { "" } else { "\n" };
        write!(out, "{line}{end}").context("while writing the results")?;
    }
    Ok(if worst.is_some_and(|w| w >= args.fail_on) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn read_input(file: Option<&PathBuf>) -> Result<String> {
    let mut text = String::new();
    match file {
        Some(p) if p.as_os_str() != "-" => {
            text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {} as UTF-8 text", p.display()))?;
        }
        _ => {
            std::io::stdin()
                .lock()
                .read_to_string(&mut text)
                .context("cannot read standard input as UTF-8 text")?;
        }
    }
    Ok(text)
}

/// Findings in one document, and the document redacted when asked.
fn scan(
    scanner: &Scanner,
    doc: &str,
    format: Format,
    redact: bool,
) -> Result<(Vec<Finding>, String), String> {
    let parsed = match format {
        Format::Text => None,
        Format::Json => {
            Some(serde_json::from_str::<Value>(doc).map_err(|e| format!("not valid JSON: {e}"))?)
        }
        Format::Auto => serde_json::from_str::<Value>(doc)
            .ok()
            .filter(|v| v.is_object() || v.is_array()),
    };
    Ok(match (parsed, redact) {
        (Some(mut v), true) => {
            let f = scanner.redact_json(&mut v);
            (f, v.to_string())
        }
        (Some(v), false) => (scanner.scan_json(&v), String::new()),
        (None, true) => {
            let (text, f) = scanner.redact_text(doc);
            (f, text)
        }
        (None, false) => (scanner.scan_text(doc), String::new()),
    })
}

/// The deployment's fingerprint key when SECRET_KEY is known (so that
/// fingerprints match the gateway's), else a fixed one.
fn fingerprint_key(global: &GlobalArgs) -> Vec<u8> {
    let secret = global.settings(&[]).ok().and_then(|loaded| {
        let s = loaded.settings;
        s.secret_key
            .map(|k| k.expose().to_string())
            .or_else(|| std::fs::read_to_string(s.data_dir.join("secret.key")).ok())
    });
    match secret {
        Some(k) => behavry_dlp::fingerprint_key(k.trim().as_bytes()).to_vec(),
        None => b"behavry scan without SECRET_KEY".to_vec(),
    }
}
