//! The scanner: which detectors run on a text, how their matches become
//! findings, the JSON walk, one level of decoding, and redaction.

use aho_corasick::AhoCorasick;
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use regex::Regex;
use serde_json::Value;
use sha2::Sha256;

use crate::custom::{CustomPattern, CustomPatternError};
use crate::detectors::{Gate, SPECS, Spec};
use crate::finding::{Encoding, Finding, Severity};
use crate::redaction_placeholder;

/// Every built-in detector id, in catalogue order.
pub fn detector_ids() -> Vec<&'static str> {
    SPECS.iter().map(|s| s.id).collect()
}

/// Configures a [`Scanner`].
pub struct ScannerBuilder {
    key: Vec<u8>,
    include_low: bool,
    custom: Vec<(CustomPattern, Regex)>,
}

impl ScannerBuilder {
    /// Turns on the low-severity detectors (e-mail, phone, IP addresses).
    pub fn include_low(mut self, on: bool) -> Self {
        self.include_low = on;
        self
    }

    /// Adds a tenant's pattern, refusing one that fails its checks.
    pub fn custom(mut self, pattern: CustomPattern) -> Result<Self, CustomPatternError> {
        let re = pattern.compile()?;
        self.custom.push((pattern, re));
        Ok(self)
    }

    pub fn build(self) -> Scanner {
        let mut anchors = Vec::new();
        let mut anchor_owner: Vec<Vec<usize>> = Vec::new();
        let mut detectors = Vec::new();
        for spec in SPECS {
            if spec.low && !self.include_low {
                continue;
            }
            let index = detectors.len();
            if let Gate::Anchors(words) = spec.gate {
                // Detectors may share an anchor (`sk-`): one pattern, all
                // its owners.
                for w in words {
                    match anchors.iter().position(|a| a == w) {
                        Some(i) => anchor_owner[i].push(index),
                        None => {
                            anchors.push(*w);
                            anchor_owner.push(vec![index]);
                        }
                    }
                }
            }
            // The catalogue is fixed and covered by tests: a pattern that
            // does not compile is a bug in this crate, not an input error.
            let compile = |p: &str| {
                Regex::new(p).unwrap_or_else(|e| {
                    panic!("built-in detector {} does not compile: {e}", spec.id)
                })
            };
            let re = compile(spec.pattern);
            let key = match spec.gate {
                Gate::Assignment(key) => Some(compile(key)),
                _ => None,
            };
            detectors.push(Detector {
                spec,
                has_group: re.captures_len() > 1,
                re,
                key,
            });
        }
        // Anchors are literal and case-sensitive, and with leftmost-first
        // semantics the search can skip through text with a vectorised
        // substring searcher. Since no anchor contains another, restarting
        // one byte after each match still finds every anchor present.
        let prefilter = AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(&anchors)
            .unwrap_or_else(|e| panic!("detector anchors do not compile: {e}"));
        Scanner {
            detectors,
            prefilter,
            anchor_owner,
            custom: self.custom,
            key: self.key,
        }
    }
}

struct Detector {
    spec: &'static Spec,
    re: Regex,
    has_group: bool,
    /// For assignment detectors, the key names they look behind.
    key: Option<Regex>,
}

/// Built-in detectors, a tenant's custom patterns and the fingerprint key.
pub struct Scanner {
    detectors: Vec<Detector>,
    prefilter: AhoCorasick,
    anchor_owner: Vec<Vec<usize>>,
    custom: Vec<(CustomPattern, Regex)>,
    key: Vec<u8>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("detectors", &self.detectors.len())
            .field("custom", &self.custom.len())
            .finish_non_exhaustive()
    }
}

/// A match before it becomes a finding.
#[derive(Clone, Debug)]
struct Hit {
    pattern: String,
    category: String,
    severity: Severity,
    rank: u8,
    start: usize,
    end: usize,
    /// What was matched (the decoded text for encoded hits), for the
    /// fingerprint and preview; dropped before anything leaves the crate.
    matched: String,
    encoding: Option<Encoding>,
}

pub(crate) fn engine(url_safe: bool) -> GeneralPurpose {
    let config = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    let alphabet = if url_safe {
        &base64::alphabet::URL_SAFE
    } else {
        &base64::alphabet::STANDARD
    };
    GeneralPurpose::new(alphabet, config)
}

/// Decoded bytes that read as text (what an encoded secret decodes to).
pub(crate) fn textual(bytes: Vec<u8>) -> Option<String> {
    let s = String::from_utf8(bytes).ok()?;
    let total = s.chars().count();
    let printable = s
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .count();
    (total > 0 && printable * 100 >= total * 95).then_some(s)
}

/// Percent-decodes `s` ('+' as space), returning the decoded text and, for
/// each decoded byte, the offset of the input byte it came from (plus one
/// final entry for the end). `None` when there is nothing encoded.
fn percent_decode(s: &str) -> Option<(String, Vec<usize>)> {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut map = Vec::with_capacity(bytes.len() + 1);
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            map.push(i);
            i += 3;
            changed = true;
            continue;
        }
        out.push(bytes[i]);
        map.push(i);
        i += 1;
    }
    map.push(bytes.len());
    if !changed {
        return None;
    }
    String::from_utf8(out).ok().map(|d| (d, map))
}

impl Scanner {
    pub fn builder(fingerprint_key: &[u8]) -> ScannerBuilder {
        ScannerBuilder {
            key: fingerprint_key.to_vec(),
            include_low: false,
            custom: Vec::new(),
        }
    }

    /// Findings in a plain text (`field` is left empty).
    pub fn scan_text(&self, text: &str) -> Vec<Finding> {
        self.text_hits(text)
            .into_iter()
            .map(|h| self.finding(h, ""))
            .collect()
    }

    /// Findings in every string (and number) of a JSON document, with their
    /// JSON Pointer.
    pub fn scan_json(&self, value: &Value) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut path = String::new();
        self.walk(value, None, &mut path, &mut |path, hits| {
            out.extend(hits.into_iter().map(|h| self.finding(h, path)));
        });
        out
    }

    /// Replaces every finding in `text` with `[redacted:{category}]`.
    pub fn redact_text(&self, text: &str) -> (String, Vec<Finding>) {
        let hits = self.text_hits(text);
        let redacted = splice(text, &hits);
        (
            redacted,
            hits.into_iter().map(|h| self.finding(h, "")).collect(),
        )
    }

    /// Redacts a JSON document in place (strings keep their place; a number
    /// that held a finding becomes the placeholder string) and returns what
    /// was redacted.
    pub fn redact_json(&self, value: &mut Value) -> Vec<Finding> {
        self.redact_json_at(value, Severity::Low)
    }

    /// Like [`Scanner::redact_json`], for findings at or above `min` only
    /// (the ones returned); lesser matches stay as they are.
    pub fn redact_json_at(&self, value: &mut Value, min: Severity) -> Vec<Finding> {
        let mut findings = Vec::new();
        self.redact_walk(value, min, &mut String::new(), &mut findings);
        findings
    }

    /// Scans and redacts in one walk (the same walk, and so the same
    /// findings in the same order, as `scan_json`).
    fn redact_walk(
        &self,
        value: &mut Value,
        min: Severity,
        path: &mut String,
        out: &mut Vec<Finding>,
    ) {
        let hits = match value {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    let len = path.len();
                    push_pointer(path, k);
                    match self.key_value_hits(k, v) {
                        Some(hits) => self.redact_with(v, hits, min, path, out),
                        None => self.redact_walk(v, min, path, out),
                    }
                    path.truncate(len);
                }
                return;
            }
            Value::Array(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&i.to_string());
                    self.redact_walk(v, min, path, out);
                    path.truncate(len);
                }
                return;
            }
            Value::String(s) => self.text_hits(s),
            Value::Number(n) => self.text_hits(&n.to_string()),
            Value::Null | Value::Bool(_) => return,
        };
        self.redact_with(value, hits, min, path, out);
    }

    /// Replaces a string (or number) holding `hits` by its redacted text,
    /// and reports the hits.
    fn redact_with(
        &self,
        value: &mut Value,
        mut hits: Vec<Hit>,
        min: Severity,
        path: &str,
        out: &mut Vec<Finding>,
    ) {
        hits.retain(|h| h.severity >= min);
        if hits.is_empty() {
            return;
        }
        let text = match &mut *value {
            Value::String(s) => std::mem::take(s),
            other => other.to_string(),
        };
        *value = Value::String(splice(&text, &hits));
        out.extend(hits.into_iter().map(|h| self.finding(h, path)));
    }

    /// Hits for a string value under a key, when the key itself says the
    /// value is a credential; `None` when the key says nothing.
    fn key_value_hits(&self, key: &str, value: &Value) -> Option<Vec<Hit>> {
        let text = value.as_str()?;
        let mut by_key = Vec::new();
        self.assignment_hits(key, text, 0, &mut by_key);
        if by_key.is_empty() {
            return None;
        }
        let mut hits = self.text_hits(text);
        hits.append(&mut by_key);
        Some(resolve(hits))
    }

    /// Matches of the assignment detectors whose key pattern accepts `key`,
    /// on the value starting at `value_start` in `text`.
    fn assignment_hits(&self, key: &str, text: &str, value_start: usize, hits: &mut Vec<Hit>) {
        let value = &text[value_start..];
        for d in &self.detectors {
            let Some(key_re) = &d.key else { continue };
            if !key_re.is_match(key) {
                continue;
            }
            let span = if d.has_group {
                d.re.captures(value).and_then(|c| c.get(1))
            } else {
                d.re.find(value)
            };
            if let Some(m) = span {
                let (start, end) = (value_start + m.start(), value_start + m.end());
                let matched = &text[start..end];
                if (d.spec.check)(matched) {
                    hits.push(hit(d.spec, start, end, matched));
                }
            }
        }
    }

    fn walk(
        &self,
        value: &Value,
        key: Option<&str>,
        path: &mut String,
        sink: &mut dyn FnMut(&str, Vec<Hit>),
    ) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let len = path.len();
                    push_pointer(path, k);
                    self.walk(v, Some(k), path, sink);
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&i.to_string());
                    self.walk(v, None, path, sink);
                    path.truncate(len);
                }
            }
            Value::String(s) => {
                let hits = match key.and_then(|k| self.key_value_hits(k, value)) {
                    Some(h) => h,
                    None => self.text_hits(s),
                };
                if !hits.is_empty() {
                    sink(path, hits);
                }
            }
            Value::Number(n) => {
                let hits = self.text_hits(&n.to_string());
                if !hits.is_empty() {
                    sink(path, hits);
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }

    /// All hits in a text: plain, inside base64 runs, and behind percent
    /// encoding; overlaps resolved.
    fn text_hits(&self, text: &str) -> Vec<Hit> {
        // One level of base64: runs long enough to hide a secret.
        let survey = Survey::of(text);
        let mut hits = self.plain_hits(text, &survey);
        for &(start, end) in &survey.runs {
            let run = &text[start..end];
            let url_safe = run.contains(['-', '_']);
            let Some(decoded) = engine(url_safe)
                .decode(run.trim_end_matches('='))
                .ok()
                .and_then(textual)
            else {
                continue;
            };
            for h in self.plain_hits(&decoded, &Survey::of(&decoded)) {
                hits.push(Hit {
                    start,
                    end,
                    encoding: Some(Encoding::Base64),
                    ..h
                });
            }
        }
        // One level of URL encoding: only matches that were encoded.
        if text.contains('%')
            && let Some((decoded, map)) = percent_decode(text)
        {
            for h in self.plain_hits(&decoded, &Survey::of(&decoded)) {
                let (start, end) = (map[h.start], map[h.end]);
                if end - start != h.end - h.start {
                    hits.push(Hit {
                        start,
                        end,
                        encoding: Some(Encoding::Url),
                        ..h
                    });
                }
            }
        }
        resolve(hits)
    }

    /// Matches of the detectors that apply to this text, and of the
    /// tenant's patterns.
    fn plain_hits(&self, text: &str, survey: &Survey) -> Vec<Hit> {
        let mut run = vec![false; self.detectors.len()];
        let mut at = 0;
        while let Some(m) = self
            .prefilter
            .find(aho_corasick::Input::new(text).range(at..))
        {
            for &owner in &self.anchor_owner[m.pattern().as_usize()] {
                run[owner] = true;
            }
            at = m.start() + 1;
        }
        let colons = text.contains(':');
        let mut hits = Vec::new();
        for (key_start, key_end, value_start) in assignments(text) {
            self.assignment_hits(&text[key_start..key_end], text, value_start, &mut hits);
        }
        for (i, d) in self.detectors.iter().enumerate() {
            let applies = match d.spec.gate {
                Gate::Anchors(_) => run[i],
                Gate::Digits { count, window } => survey.clustered(count, window),
                Gate::Colons => colons,
                Gate::Assignment(_) => false,
            };
            if !applies {
                continue;
            }
            // A match the check rejects may hide a valid one starting
            // inside it ("0 4111 1111 1111 1111"): search again one
            // character further on rather than after it.
            let mut at = 0;
            while at <= text.len() {
                let found = if d.has_group {
                    d.re.captures_at(text, at).and_then(|c| {
                        let whole = c.get(0)?;
                        Some((whole.start(), c.get(1).unwrap_or(whole)))
                    })
                } else {
                    d.re.find_at(text, at).map(|m| (m.start(), m))
                };
                let Some((whole_start, m)) = found else { break };
                if (d.spec.check)(m.as_str()) {
                    hits.push(hit(d.spec, m.start(), m.end(), m.as_str()));
                    at = m.end().max(whole_start + 1);
                } else {
                    at = whole_start + 1;
                }
                while at < text.len() && !text.is_char_boundary(at) {
                    at += 1;
                }
            }
        }
        for (p, re) in &self.custom {
            for m in re.find_iter(text) {
                if m.is_empty() {
                    continue;
                }
                hits.push(Hit {
                    pattern: p.name.clone(),
                    category: p.category.clone(),
                    severity: p.severity,
                    rank: 0,
                    start: m.start(),
                    end: m.end(),
                    matched: m.as_str().into(),
                    encoding: None,
                });
            }
        }
        hits
    }

    fn finding(&self, hit: Hit, field: &str) -> Finding {
        Finding {
            fingerprint: self.fingerprint(&hit.matched),
            preview: preview(&hit.matched),
            pattern: hit.pattern,
            category: hit.category,
            severity: hit.severity,
            field: field.to_owned(),
            offset: hit.start,
            length: hit.end - hit.start,
            encoding: hit.encoding,
        }
    }

    /// HMAC-SHA-256 of the matched text under the scanner's key, first 16
    /// bytes in hex.
    pub fn fingerprint(&self, matched: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(matched.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

fn hit(spec: &Spec, start: usize, end: usize, matched: &str) -> Hit {
    Hit {
        pattern: spec.id.into(),
        category: spec.category.into(),
        severity: spec.severity,
        rank: spec.rank,
        start,
        end,
        matched: matched.into(),
        encoding: None,
    }
}

/// Every `Gate::Digits` of the catalogue (a test checks they are all here).
const DIGIT_GATES: [(usize, usize); 5] = [(13, 25), (8, 34), (9, 11), (10, 16), (4, 15)];

/// What one pass over a text tells the scanner: its runs of base64
/// characters long enough to hide a secret (16 or more, with up to two `=`
/// of padding), and which digit gates it passes.
struct Survey {
    runs: Vec<(usize, usize)>,
    clusters: [bool; DIGIT_GATES.len()],
}

impl Survey {
    fn of(text: &str) -> Survey {
        const ALPHABET: u8 = 1;
        const DIGIT: u8 = 2;
        const CLASS: [u8; 256] = {
            let mut t = [0u8; 256];
            let mut b = 0;
            while b < 256 {
                let c = b as u8;
                if c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'_' | b'-') {
                    t[b] |= ALPHABET;
                }
                if c.is_ascii_digit() {
                    t[b] |= DIGIT;
                }
                b += 1;
            }
            t
        };
        let bytes = text.as_bytes();
        let mut runs = Vec::new();
        let mut run_start: Option<usize> = None;
        let close = |start: usize, at: usize, runs: &mut Vec<(usize, usize)>| {
            if at - start >= 16 {
                let mut end = at;
                while end < bytes.len() && end - at < 2 && bytes[end] == b'=' {
                    end += 1;
                }
                runs.push((start, end));
            }
        };
        // Positions of the last 16 digits, enough for the widest gate.
        let mut last = [0usize; 16];
        let mut seen = 0usize;
        let mut clusters = [false; DIGIT_GATES.len()];
        for (i, &b) in bytes.iter().enumerate() {
            let class = CLASS[b as usize];
            if class & ALPHABET != 0 {
                run_start.get_or_insert(i);
            } else if let Some(start) = run_start.take() {
                close(start, i, &mut runs);
            }
            if class & DIGIT != 0 {
                last[seen % 16] = i;
                seen += 1;
                for (g, &(count, window)) in DIGIT_GATES.iter().enumerate() {
                    if seen >= count && i - last[(seen - count) % 16] < window {
                        clusters[g] = true;
                    }
                }
            }
        }
        if let Some(start) = run_start {
            close(start, bytes.len(), &mut runs);
        }
        Survey { runs, clusters }
    }

    fn clustered(&self, count: usize, window: usize) -> bool {
        DIGIT_GATES
            .iter()
            .position(|&g| g == (count, window))
            .is_some_and(|g| self.clusters[g])
    }
}

/// `key = value` and `key: value` in a text, as (key start, key end, value
/// start): the key is the identifier before the operator (quotes and
/// spaces skipped), the value starts after it (spaces and one quote
/// skipped). `==`, `::` and `://` are not assignments.
fn assignments(text: &str) -> Vec<(usize, usize, usize)> {
    let bytes = text.as_bytes();
    let is_key = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    let mut out = Vec::new();
    for p in memchr::memchr2_iter(b'=', b':', bytes) {
        let next = bytes.get(p + 1).copied();
        let prev = p.checked_sub(1).map(|i| bytes[i]);
        if matches!(next, Some(b'=' | b':' | b'/'))
            || matches!(prev, Some(b'=' | b':' | b'!' | b'<' | b'>'))
        {
            continue;
        }
        let mut key_end = p;
        while key_end > 0 && bytes[key_end - 1] == b' ' {
            key_end -= 1;
        }
        if key_end > 0 && matches!(bytes[key_end - 1], b'"' | b'\'') {
            key_end -= 1;
        }
        let mut key_start = key_end;
        while key_start > 0 && is_key(bytes[key_start - 1]) {
            key_start -= 1;
        }
        if key_start == key_end {
            continue;
        }
        let mut value = p + 1;
        while value < bytes.len() && bytes[value] == b' ' {
            value += 1;
        }
        if value < bytes.len() && matches!(bytes[value], b'"' | b'\'') {
            value += 1;
        }
        out.push((key_start, key_end, value));
    }
    out
}

/// Keeps, of overlapping hits, the one with the lowest rank (then the
/// longest, then the first); returns them in text order.
fn resolve(mut hits: Vec<Hit>) -> Vec<Hit> {
    if hits.len() < 2 {
        return hits;
    }
    hits.sort_by(|a, b| {
        (a.rank, b.end - b.start, a.start).cmp(&(b.rank, a.end - a.start, b.start))
    });
    // Accepted hits, kept sorted by start; being disjoint, they are sorted
    // by end too, so one binary search finds the only possible overlaps.
    let mut kept: Vec<Hit> = Vec::with_capacity(hits.len());
    for h in hits {
        let i = kept.partition_point(|k| k.end <= h.start);
        if kept.get(i).is_none_or(|k| k.start >= h.end) {
            kept.insert(i, h);
        }
    }
    kept
}

/// `text` with each (non-overlapping, ordered) hit replaced by its
/// placeholder.
fn splice(text: &str, hits: &[Hit]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for h in hits {
        if h.start < at || h.end > text.len() {
            continue;
        }
        out.push_str(&text[at..h.start]);
        out.push_str(&redaction_placeholder(&h.category));
        at = h.end;
    }
    out.push_str(&text[at..]);
    out
}

/// A JSON Pointer segment (RFC 6901 escaping).
pub(crate) fn push_pointer(path: &mut String, key: &str) {
    path.push('/');
    for c in key.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

/// First four and last two characters of a long match; nothing of a short
/// one (where even that would reveal too much).
fn preview(matched: &str) -> String {
    let chars: Vec<char> = matched.chars().collect();
    if chars.len() < 16 {
        return String::new();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scanner() -> Scanner {
        Scanner::builder(b"test key").build()
    }

    #[test]
    fn finds_and_locates_in_json() {
        let s = scanner();
        let v = json!({"a": [1, {"b/c": "token ghp_R8yXq2Lw9ZtK4mVbN7cJ3sHfD6gP1aE0uQ5o here"}]});
        let f = s.scan_json(&v);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].pattern, "github_token");
        assert_eq!(f[0].field, "/a/1/b~1c");
        assert_eq!((f[0].offset, f[0].length), (6, 40));
        assert_eq!(f[0].severity, Severity::Critical);
        assert!(
            !serde_json::to_string(&f)
                .unwrap()
                .contains("R8yXq2Lw9ZtK4mVbN7c")
        );
    }

    #[test]
    fn looks_inside_base64_and_url_encoding() {
        use base64::engine::general_purpose::STANDARD;
        let s = scanner();
        let secret = "AKIAZ7QW3ERT5YUI8OPL";
        let b64 = STANDARD.encode(format!("aws_access_key_id = {secret}"));
        let f = s.scan_text(&format!("blob: {b64}"));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].encoding, Some(Encoding::Base64));
        assert_eq!(f[0].offset, 6);
        assert_eq!(f[0].fingerprint, s.fingerprint(secret));

        let url = "https://x.example/?q=card%3A%204111%201111%201111%201111&x=1";
        let f = s.scan_text(url);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].pattern, "credit_card");
        assert_eq!(f[0].encoding, Some(Encoding::Url));
        assert_eq!(
            &url[f[0].offset..f[0].offset + f[0].length],
            "4111%201111%201111%201111"
        );
    }

    #[test]
    fn keys_mark_credentials_in_json() {
        let s = scanner();
        let f = s.scan_json(&json!({"client_secret": "Zq8!rT2#pL", "password": "${DB_PASSWORD}", "name": "Zq8!rT2#pL"}));
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].pattern.as_str(), f[0].field.as_str()),
            ("generic_credential", "/client_secret")
        );
    }

    #[test]
    fn redacts_in_place() {
        let s = scanner();
        let mut v =
            json!({"cmd": "psql postgres://app:s3cr3tPa55@db:5432/app", "n": 4111111111111111u64});
        let f = s.redact_json(&mut v);
        assert_eq!(f.len(), 2);
        assert_eq!(
            v,
            json!({"cmd": "psql postgres://app:[redacted:connection_string]@db:5432/app", "n": "[redacted:payment_card]"})
        );
        let (text, _) = s.redact_text("key AKIAZ7QW3ERT5YUI8OPL end");
        assert_eq!(text, "key [redacted:cloud_credentials] end");
    }

    #[test]
    fn low_severity_is_opt_in() {
        let text = "mail alice@corp.example from 203.0.113.9";
        assert!(scanner().scan_text(text).is_empty());
        let all = Scanner::builder(b"k").include_low(true).build();
        let ids: Vec<String> = all.scan_text(text).into_iter().map(|f| f.pattern).collect();
        assert_eq!(ids, ["email", "ipv4_address"]);
    }

    #[test]
    fn custom_patterns_apply() {
        let s = Scanner::builder(b"k")
            .custom(CustomPattern {
                name: "employee_id".into(),
                regex: r"EMP-[0-9]{6}".into(),
                severity: Severity::High,
                category: "hr".into(),
            })
            .unwrap()
            .build();
        let (text, f) = s.redact_text("owner EMP-123456");
        assert_eq!(text, "owner [redacted:hr]");
        assert_eq!(f[0].pattern, "employee_id");
    }

    #[test]
    fn every_digit_gate_is_computed() {
        let survey = Survey::of("0123456789 0123456789 0123456789 0123456789");
        for spec in SPECS {
            if let Gate::Digits { count, window } = spec.gate {
                assert!(survey.clustered(count, window), "{} is never run", spec.id);
            }
        }
        assert!(!Survey::of("1 2 3 4 5 6 7 8 9 10").clustered(9, 11));
        let runs = Survey::of("x aGVsbG8gd29ybGQgaGVsbG8= short").runs;
        assert_eq!(runs, [(2, 26)]);
    }

    #[test]
    fn catalogue_has_at_least_thirty_detectors() {
        assert!(detector_ids().len() >= 30);
    }
}
