//! Properties of redaction over generated documents: whatever text
//! surrounds them, secrets are gone afterwards, the scanner finds nothing
//! more, nothing it reports contains a secret, and the document keeps its
//! shape.

use behavry_dlp::Scanner;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Secrets of several detectors' shapes (synthetic).
const SECRETS: &[&str] = &[
    "AKIAZ7QW3ERT5YUI8OPL",
    "ghp_R8yXq2Lw9ZtK4mVbN7cJ3sHfD6gP1aE0uQ5o",
    "glpat-Xk29fLq0Zr8TmB3wYv1N",
    "xoxb-482915736201-5093817264513-Qw8ErT5yUi2OpA7sDf3GhJ9k",
    "sk-proj-Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6kM9nP2qS5uV8",
    "4111 1111 1111 1111",
    "GB82 WEST 1234 5698 7654 32",
    "123-45-6789",
    "postgres://app:Vq7xTz93Lm@db.internal:5432/app",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
];

/// The part of a secret that must not survive (for a connection string,
/// its password).
fn core(secret: &str) -> &str {
    match secret.split_once(":Vq7") {
        Some(_) => "Vq7xTz93Lm",
        None => secret,
    }
}

fn filler() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{0,12}",
        Just(" ".to_string()),
        Just("\n".to_string()),
        Just("token=".to_string()),
        Just("{\"k\": \"".to_string()),
        "[A-Za-z0-9 .,:;=/_-]{0,16}",
    ]
}

fn text_with_secrets() -> impl Strategy<Value = (String, Vec<&'static str>)> {
    prop::collection::vec((filler(), prop::sample::select(SECRETS)), 1..4).prop_map(|parts| {
        let mut text = String::new();
        let mut used = Vec::new();
        for (before, secret) in parts {
            text.push_str(&before);
            text.push(' ');
            text.push_str(secret);
            text.push(' ');
            used.push(secret);
        }
        (text, used)
    })
}

fn scanner() -> Scanner {
    Scanner::builder(b"property key").build()
}

proptest! {
    // Failures are reported with their minimal input; nothing is written
    // into the source tree.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn redacted_text_keeps_no_secret((text, used) in text_with_secrets()) {
        let s = scanner();
        let (redacted, findings) = s.redact_text(&text);
        prop_assert!(!findings.is_empty());
        for secret in &used {
            prop_assert!(!redacted.contains(core(secret)), "{secret} survived in {redacted}");
        }
        prop_assert!(s.scan_text(&redacted).is_empty(), "still found something in {redacted}");
        let reported = serde_json::to_string(&findings).unwrap();
        for secret in &used {
            prop_assert!(!reported.contains(core(secret)));
        }
    }

    #[test]
    fn redacted_json_keeps_shape_and_no_secret(
        fields in prop::collection::vec(("[a-z_]{1,8}", text_with_secrets()), 1..5),
        nest in any::<bool>(),
    ) {
        let s = scanner();
        let mut map = Map::new();
        for (key, (text, _)) in &fields {
            map.insert(key.clone(), Value::String(text.clone()));
        }
        let mut doc = if nest {
            serde_json::json!({"arguments": Value::Object(map), "list": [1, "two"]})
        } else {
            Value::Object(map)
        };
        let before = doc.clone();
        s.redact_json(&mut doc);
        let serialized = doc.to_string();
        let reparsed: Value = serde_json::from_str(&serialized).unwrap();
        prop_assert_eq!(&reparsed, &doc);
        prop_assert!(s.scan_json(&doc).is_empty(), "still found something in {serialized}");
        for (_, (_, used)) in &fields {
            for secret in used {
                prop_assert!(!serialized.contains(core(secret)));
            }
        }
        // Same keys, same nesting: only string contents changed.
        fn shape(v: &Value) -> Value {
            match v {
                Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
                Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
                Value::String(_) => Value::String(String::new()),
                other => other.clone(),
            }
        }
        prop_assert_eq!(shape(&doc), shape(&before));
    }
}

/// Hostile text: any Unicode, with stretches that look like the encodings
/// and formats the scanner decodes or matches.
fn hostile() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            any::<String>(),
            "(%[0-9A-Fa-f]{2}|%[0-9A-Za-z]?|[+ ]){0,20}",
            "[A-Za-z0-9+/=_-]{10,80}",
            "[0-9 -]{10,40}",
            "(password|token|api_key|Authorization)[\"']? ?[:=] ?[\"']?[^\\n]{0,30}",
            "(ghp_|AKIA|eyJ|sk-|xoxb-|-----BEGIN PRIVATE KEY-----|postgres://)[A-Za-z0-9_.:@/-]{0,60}",
            "[\u{80}-\u{10FFFF}]{1,8}",
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever the input, scanning and redacting neither panic nor report
    /// spans outside the text or inside a character.
    #[test]
    fn hostile_input_is_handled(text in hostile()) {
        let s = Scanner::builder(b"k").include_low(true).build();
        for f in s.scan_text(&text) {
            prop_assert!(f.offset + f.length <= text.len());
            prop_assert!(text.is_char_boundary(f.offset));
            prop_assert!(text.is_char_boundary(f.offset + f.length));
        }
        let (redacted, _) = s.redact_text(&text);
        s.scan_text(&redacted);
        let mut doc = serde_json::json!({"a": text, "b": [text.clone(), 4111111111111111u64]});
        s.redact_json(&mut doc);
        prop_assert!(serde_json::from_str::<Value>(&doc.to_string()).is_ok());
    }
}
