//! Any text, JSON result or tool definition through the injection
//! scanner: no panic, and every finding's span inside its string.
#![no_main]

use std::sync::OnceLock;

use behavry_dlp::InjectionScanner;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn scanner() -> &'static InjectionScanner {
    static S: OnceLock<InjectionScanner> = OnceLock::new();
    S.get_or_init(InjectionScanner::new)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for f in scanner().scan_text(&text) {
        assert!(f.offset + f.length <= text.len());
    }
    if let Ok(doc) = serde_json::from_slice::<Value>(data) {
        let _ = scanner().scan_json(&doc);
        let _ = scanner().scan_tool(&doc);
    }
});
