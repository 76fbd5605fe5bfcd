//! Any text through the data-protection scanner and redaction: no panic,
//! every finding inside the text on character boundaries, and redaction
//! reporting what the scan found.
#![no_main]

use std::sync::OnceLock;

use behavry_dlp::Scanner;
use libfuzzer_sys::fuzz_target;

fn scanner() -> &'static Scanner {
    static S: OnceLock<Scanner> = OnceLock::new();
    S.get_or_init(|| Scanner::builder(b"fuzz").include_low(true).build())
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let findings = scanner().scan_text(&text);
    for f in &findings {
        let end = f.offset + f.length;
        assert!(end <= text.len());
        assert!(text.is_char_boundary(f.offset) && text.is_char_boundary(end));
    }
    let (_, redacted) = scanner().redact_text(&text);
    assert_eq!(redacted.len(), findings.len());
});
