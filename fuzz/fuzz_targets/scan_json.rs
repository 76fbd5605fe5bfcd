//! Any JSON document through the walker: scanning and redaction never
//! panic, and the redacted document is still JSON of the same shape.
#![no_main]

use std::sync::OnceLock;

use behavry_dlp::Scanner;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn scanner() -> &'static Scanner {
    static S: OnceLock<Scanner> = OnceLock::new();
    S.get_or_init(|| Scanner::builder(b"fuzz").include_low(true).build())
}

fn shape(v: &Value) -> String {
    match v {
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", shape(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Value::Array(a) => format!("[{}]", a.iter().map(shape).collect::<Vec<_>>().join(",")),
        // A number holding a finding becomes a string.
        Value::String(_) | Value::Number(_) => "s".into(),
        Value::Bool(_) => "b".into(),
        Value::Null => "n".into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = scanner().scan_json(&doc);
    let mut redacted = doc.clone();
    let _ = scanner().redact_json(&mut redacted);
    assert_eq!(shape(&doc), shape(&redacted));
    serde_json::to_string(&redacted).expect("redacted JSON serialises");
});
