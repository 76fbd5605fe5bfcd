//! The built-in detectors.
//!
//! Each has a regular expression, optionally a capture group that marks the
//! secret itself (so `password=…` redacts the value, not the key), a check
//! that rejects look-alikes (checksums, ranges, placeholders), and the
//! literal anchors that must occur in a text for it to be worth running
//! (one Aho-Corasick pass finds them all). The numeric detectors are gated
//! on digits occurring close together; the assignment detectors
//! (`password=…`, `"api_key": "…"`) look only at the values of keys whose
//! name says what they hold.

use crate::finding::Severity;
use crate::validate;

/// When a detector applies, beyond its pattern matching.
#[derive(Clone, Copy)]
pub(crate) enum Gate {
    /// Runs when one of the literals occurs. No anchor may contain another
    /// (detectors that need the same prefix share it), which lets the
    /// search skip ahead instead of reporting overlapping matches.
    Anchors(&'static [&'static str]),
    /// Runs when `count` ASCII digits occur within `window` bytes somewhere
    /// in the text (a card number has 13 or more within 25, an SSN 9 within
    /// 11): most text has digits, few have them that close together.
    Digits { count: usize, window: usize },
    /// Runs when the text contains a colon (IPv6).
    Colons,
    /// Runs at each `key = value` or `key: value` in the text (and on JSON
    /// members) whose key matches this anchored pattern; the detector's own
    /// pattern is then matched at the start of the value.
    Assignment(&'static str),
}

pub(crate) struct Spec {
    pub id: &'static str,
    pub category: &'static str,
    pub severity: Severity,
    pub pattern: &'static str,
    pub gate: Gate,
    pub check: fn(&str) -> bool,
    /// Lower wins when two findings overlap: specific formats beat generic
    /// assignments, which beat entropy guesses; contact data yields to all.
    pub rank: u8,
    /// Off unless the tenant turns low-severity detection on.
    pub low: bool,
}

fn not_placeholder(s: &str) -> bool {
    !validate::placeholder(s)
}

fn random_secret(s: &str) -> bool {
    not_placeholder(s) && validate::looks_random(s)
}

fn any(_: &str) -> bool {
    true
}

fn basic_credentials(s: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .is_some_and(|d| {
            d.split_once(':')
                .is_some_and(|(u, p)| !u.is_empty() && !p.is_empty() && !validate::placeholder(p))
        })
}

fn ipv6(s: &str) -> bool {
    s.matches(':').count() >= 2 && s.parse::<std::net::Ipv6Addr>().is_ok()
}

fn ipv4(s: &str) -> bool {
    s.parse::<std::net::Ipv4Addr>().is_ok()
}

fn generic_value(s: &str) -> bool {
    not_placeholder(s) && s.len() >= 8 && !s.chars().all(|c| c.is_ascii_lowercase())
}

/// Key names whose value is a credential. Shared by the text pattern and by
/// the JSON walker, which sees keys and values apart.
pub(crate) const CREDENTIAL_KEY: &str = r"(?i)^[a-z0-9_\-.]*(?:password|passwd|pwd|passphrase|secret|api[_\-]?key|access[_\-]?token|auth[_\-]?token|refresh[_\-]?token|bearer[_\-]?token|client[_\-]?secret|private[_\-]?key|token)$";

/// Key names that suggest a key-like value (weaker than `CREDENTIAL_KEY`).
pub(crate) const KEYLIKE_KEY: &str =
    r"(?i)^[a-z0-9_\-.]*(?:key|secret|token|credential|creds?|auth|signature|salt)[a-z0-9_\-.]*$";

pub(crate) const SPECS: &[Spec] = &[
    // --- critical: credentials with a recognisable format ---
    Spec {
        id: "aws_access_key_id",
        category: "cloud_credentials",
        severity: Severity::Critical,
        pattern: r"(?-u:\b)(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}(?-u:\b)",
        gate: Gate::Anchors(&[
            "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA",
        ]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "aws_secret_access_key",
        category: "cloud_credentials",
        severity: Severity::Critical,
        pattern: r"^[A-Za-z0-9/+]{40}(?-u:\b)",
        gate: Gate::Assignment(
            r"(?i)^(?:aws_?)?secret_?access_?key(?:_?id)?$|^aws_?secret(?:_?key)?$",
        ),
        check: random_secret,
        rank: 0,
        low: false,
    },
    Spec {
        id: "gcp_api_key",
        category: "cloud_credentials",
        severity: Severity::Critical,
        pattern: r"AIza[0-9A-Za-z_\-]{35}",
        gate: Gate::Anchors(&["AIza"]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "google_oauth_token",
        category: "cloud_credentials",
        severity: Severity::Critical,
        pattern: r"ya29\.[0-9A-Za-z_\-]{30,}",
        gate: Gate::Anchors(&["ya29."]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "azure_storage_key",
        category: "cloud_credentials",
        severity: Severity::Critical,
        pattern: r"(?i:AccountKey)=([A-Za-z0-9+/]{86}==)",
        gate: Gate::Anchors(&["AccountKey="]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "github_token",
        category: "source_control",
        severity: Severity::Critical,
        pattern: r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})(?-u:\b)",
        gate: Gate::Anchors(&["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "gitlab_token",
        category: "source_control",
        severity: Severity::Critical,
        pattern: r"glpat-[0-9A-Za-z_\-]{20}",
        gate: Gate::Anchors(&["glpat-"]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "npm_token",
        category: "source_control",
        severity: Severity::Critical,
        pattern: r"(?-u:\b)npm_[A-Za-z0-9]{36}(?-u:\b)",
        gate: Gate::Anchors(&["npm_"]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "pypi_token",
        category: "source_control",
        severity: Severity::Critical,
        pattern: r"pypi-AgEIcHlwaS5vcmc[0-9A-Za-z_\-]{50,}",
        gate: Gate::Anchors(&["pypi-AgEIcHlwaS5vcmc"]),
        check: any,
        rank: 0,
        low: false,
    },
    Spec {
        id: "slack_token",
        category: "chat",
        severity: Severity::Critical,
        pattern: r"xox[baprs]-[0-9]{8,}-[0-9A-Za-z\-]{8,}",
        gate: Gate::Anchors(&["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-"]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "slack_webhook",
        category: "chat",
        severity: Severity::Critical,
        pattern: r"https://hooks\.slack\.com/services/T[A-Z0-9]{8,}/B[A-Z0-9]{8,}/[A-Za-z0-9]{24}",
        gate: Gate::Anchors(&["hooks.slack.com/services/"]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "discord_webhook",
        category: "chat",
        severity: Severity::Critical,
        pattern: r"https://(?:discord|discordapp)\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_\-]{60,70}",
        gate: Gate::Anchors(&["/api/webhooks/"]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "openai_api_key",
        category: "ai_provider",
        severity: Severity::Critical,
        pattern: r"(?-u:\b)sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,}|[A-Za-z0-9]{48}(?-u:\b))",
        gate: Gate::Anchors(&["sk-"]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "anthropic_api_key",
        category: "ai_provider",
        severity: Severity::Critical,
        pattern: r"sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_\-]{80,}",
        gate: Gate::Anchors(&["sk-"]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "huggingface_token",
        category: "ai_provider",
        severity: Severity::Critical,
        pattern: r"(?-u:\b)hf_[A-Za-z]{34}(?-u:\b)",
        gate: Gate::Anchors(&["hf_"]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "stripe_secret_key",
        category: "payment_provider",
        severity: Severity::Critical,
        pattern: r"(?:sk|rk)_live_[A-Za-z0-9]{24,}",
        gate: Gate::Anchors(&["sk_live_", "rk_live_"]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "sendgrid_api_key",
        category: "saas",
        severity: Severity::Critical,
        pattern: r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}",
        gate: Gate::Anchors(&["SG."]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "twilio_api_key",
        category: "saas",
        severity: Severity::Critical,
        pattern: r"(?-u:\b)SK[0-9a-f]{32}(?-u:\b)",
        gate: Gate::Anchors(&["SK"]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "private_key",
        category: "private_key",
        severity: Severity::Critical,
        pattern: r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----(?:(?s:.*?)-----END (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s]*)",
        gate: Gate::Anchors(&["PRIVATE KEY"]),
        check: any,
        rank: 0,
        low: false,
    },
    Spec {
        id: "jwt",
        category: "token",
        severity: Severity::Critical,
        pattern: r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,}",
        gate: Gate::Anchors(&["eyJ"]),
        check: any,
        rank: 0,
        low: false,
    },
    // --- high: credentials in context, financial and national identifiers ---
    Spec {
        id: "connection_string_password",
        category: "connection_string",
        severity: Severity::High,
        pattern: r#"(?i:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|jdbc:[a-z]+)://[^:/\s@"'<>]+:([^@\s"'/<>]+)@[^\s"'<>]+"#,
        gate: Gate::Anchors(&["://"]),
        check: not_placeholder,
        rank: 0,
        low: false,
    },
    Spec {
        id: "basic_auth_header",
        category: "credential",
        severity: Severity::High,
        pattern: r"^(?i:basic)\s+([A-Za-z0-9+/]{6,}={0,2})",
        gate: Gate::Assignment(r"(?i)^[a-z0-9_\-.]*authorization$"),
        check: basic_credentials,
        rank: 0,
        low: false,
    },
    Spec {
        id: "credit_card",
        category: "payment_card",
        severity: Severity::High,
        // Lazy: of "4111 1111 1111 1111 0" the shortest candidate that ends
        // at a word boundary is the card; a candidate the check rejects is
        // retried one character on.
        pattern: r"(?-u:\b)[0-9](?:[ \-]?[0-9]){12,18}?(?-u:\b)",
        gate: Gate::Digits {
            count: 13,
            window: 25,
        },
        check: validate::payment_card,
        rank: 0,
        low: false,
    },
    Spec {
        id: "iban",
        category: "bank_account",
        severity: Severity::High,
        pattern: r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?-u:\b)",
        gate: Gate::Digits {
            count: 8,
            window: 34,
        },
        check: validate::iban,
        rank: 0,
        low: false,
    },
    Spec {
        id: "us_ssn",
        category: "national_id",
        severity: Severity::High,
        pattern: r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)",
        gate: Gate::Digits {
            count: 9,
            window: 11,
        },
        check: validate::us_ssn,
        rank: 0,
        low: false,
    },
    // --- medium: generic assignments and entropy ---
    Spec {
        id: "generic_credential",
        category: "credential",
        severity: Severity::Medium,
        pattern: r#"^[^\s"',;&]{8,}"#,
        gate: Gate::Assignment(CREDENTIAL_KEY),
        check: generic_value,
        rank: 1,
        low: false,
    },
    Spec {
        id: "high_entropy_secret",
        category: "secret",
        severity: Severity::Medium,
        pattern: r"^[A-Za-z0-9+/=_\-.]{20,}",
        gate: Gate::Assignment(KEYLIKE_KEY),
        check: random_secret,
        rank: 2,
        low: false,
    },
    // --- low: contact and network data, off by default ---
    Spec {
        id: "email",
        category: "contact",
        severity: Severity::Low,
        pattern: r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
        gate: Gate::Anchors(&["@"]),
        check: any,
        rank: 3,
        low: true,
    },
    Spec {
        id: "phone_number",
        category: "contact",
        severity: Severity::Low,
        pattern: r"(?:\+[1-9][0-9]{7,14}(?-u:\b)|(?:\([2-9][0-9]{2}\) ?|(?-u:\b)[2-9][0-9]{2}[.\-])[2-9][0-9]{2}[.\-][0-9]{4}(?-u:\b))",
        gate: Gate::Digits {
            count: 10,
            window: 16,
        },
        check: any,
        rank: 3,
        low: true,
    },
    Spec {
        id: "ipv4_address",
        category: "network",
        severity: Severity::Low,
        pattern: r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)",
        gate: Gate::Digits {
            count: 4,
            window: 15,
        },
        check: ipv4,
        rank: 3,
        low: true,
    },
    Spec {
        id: "ipv6_address",
        category: "network",
        severity: Severity::Low,
        pattern: r"(?i:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}",
        gate: Gate::Colons,
        check: ipv6,
        rank: 3,
        low: true,
    },
];
