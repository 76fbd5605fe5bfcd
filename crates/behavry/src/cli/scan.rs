//! `behavry scan`: the gateway's scanners on files or standard input, for
//! trying patterns and for CI pipelines: data protection (what must not
//! leave), injection (`--inbound`, what a tool result tries to make the
//! agent do) and tool poisoning (`--tools`, MCP tool definitions).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use behavry_dlp::{InjectionScanner, Scanner, Severity};
use clap::{Args, ValueEnum};
use serde::Serialize;
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
    #[arg(long, conflicts_with_all = ["inbound", "tools"])]
    redact: bool,
    /// Run the injection scanner instead, as on tool results: instructions
    /// aimed at the agent, exfiltration links, hidden text.
    #[arg(long, conflicts_with = "tools")]
    inbound: bool,
    /// Scan MCP tool definitions for poisoning: a `tools/list` result (or
    /// the JSON-RPC response holding one), an array of tools, or one tool.
    /// Prints one report per tool.
    #[arg(long)]
    tools: bool,
}

/// Which scanner runs.
enum Scanners {
    Outbound(Scanner),
    Inbound(InjectionScanner),
    Tools(InjectionScanner),
}

/// What one document produced.
struct Report {
    findings: Value,
    worst: Option<Severity>,
    redacted: String,
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
    let scanner = if args.tools {
        Scanners::Tools(InjectionScanner::new())
    } else if args.inbound {
        Scanners::Inbound(InjectionScanner::new())
    } else {
        Scanners::Outbound(
            Scanner::builder(&fingerprint_key(global))
                .include_low(args.include_low)
                .build(),
        )
    };
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
        let report = match scan(&scanner, doc, args.format, args.redact) {
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
        worst = worst.max(report.worst);
        let key = if args.tools { "tools" } else { "findings" };
        let line = match (args.redact, args.jsonl) {
            (true, _) => report.redacted,
            (false, true) => json!({"line": i + 1, key: report.findings}).to_string(),
            (false, false) => serde_json::to_string_pretty(&json!({
                key: report.findings,
                "max_severity": report.worst,
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
fn scan(scanner: &Scanners, doc: &str, format: Format, redact: bool) -> Result<Report, String> {
    let parsed = match format {
        Format::Text => None,
        Format::Json => {
            Some(serde_json::from_str::<Value>(doc).map_err(|e| format!("not valid JSON: {e}"))?)
        }
        Format::Auto => serde_json::from_str::<Value>(doc)
            .ok()
            .filter(|v| v.is_object() || v.is_array()),
    };
    let report = |findings: Value, worst, redacted| Report {
        findings,
        worst,
        redacted,
    };
    Ok(match scanner {
        Scanners::Outbound(scanner) => match (parsed, redact) {
            (Some(mut v), true) => {
                let f = scanner.redact_json(&mut v);
                report(
                    to_json(&f),
                    f.iter().map(|f| f.severity).max(),
                    v.to_string(),
                )
            }
            (Some(v), false) => {
                let f = scanner.scan_json(&v);
                report(
                    to_json(&f),
                    f.iter().map(|f| f.severity).max(),
                    String::new(),
                )
            }
            (None, true) => {
                let (text, f) = scanner.redact_text(doc);
                report(to_json(&f), f.iter().map(|f| f.severity).max(), text)
            }
            (None, false) => {
                let f = scanner.scan_text(doc);
                report(
                    to_json(&f),
                    f.iter().map(|f| f.severity).max(),
                    String::new(),
                )
            }
        },
        Scanners::Inbound(scanner) => {
            let f = match parsed {
                Some(v) => scanner.scan_json(&v),
                None => scanner.scan_text(doc),
            };
            report(to_json(&f), behavry_dlp::worst(&f), String::new())
        }
        Scanners::Tools(scanner) => {
            let doc = parsed
                .ok_or("--tools needs JSON: a tools/list result, an array of tools, or one tool")?;
            let tools = tool_definitions(&doc)?;
            let mut worst = None;
            let reports: Vec<Value> = tools
                .iter()
                .map(|tool| {
                    let f = scanner.scan_tool(tool);
                    let w = behavry_dlp::worst(&f);
                    worst = worst.max(w);
                    json!({
                        "name": tool.get("name").and_then(Value::as_str).unwrap_or_default(),
                        "poisoned": w.is_some_and(|w| w >= Severity::High),
                        "max_severity": w,
                        "findings": f,
                    })
                })
                .collect();
            report(Value::Array(reports), worst, String::new())
        }
    })
}

/// Findings as JSON (plain structs: serialising cannot fail).
fn to_json<T: Serialize>(findings: &[T]) -> Value {
    Value::Array(
        findings
            .iter()
            .map(|f| serde_json::to_value(f).unwrap_or(Value::Null))
            .collect(),
    )
}

/// The tool definitions in a document: `{"tools": [...]}`, a JSON-RPC
/// response whose result is that, an array of tools, or one tool.
fn tool_definitions(doc: &Value) -> Result<Vec<Value>, String> {
    let list = doc
        .get("result")
        .and_then(|r| r.get("tools"))
        .or_else(|| doc.get("tools"));
    let tools = match (list, doc) {
        (Some(Value::Array(t)), _) => t.clone(),
        (Some(_), _) => return Err("`tools` is not an array".into()),
        (None, Value::Array(t)) => t.clone(),
        (None, Value::Object(o)) if o.contains_key("name") => vec![doc.clone()],
        _ => {
            return Err(
                "no tool definitions: expected {\"tools\": [...]}, an array of tools, or one tool with a name".into(),
            );
        }
    };
    if let Some(bad) = tools.iter().position(|t| !t.is_object()) {
        return Err(format!("tool {bad} is not a JSON object"));
    }
    Ok(tools)
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
