//! Checks that turn a pattern match into a finding: checksums, number
//! ranges, entropy, and the placeholders documentation is full of.

/// Luhn checksum over the digits of `s` (separators ignored).
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() < 2 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A payment card: 13–19 digits with a known issuer prefix and a valid
/// Luhn check; separators, if any, are spaces or dashes used consistently.
pub fn payment_card(s: &str) -> bool {
    let has_space = s.contains(' ');
    let has_dash = s.contains('-');
    if has_space && has_dash {
        return false;
    }
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    if (has_space || has_dash) && !grouped_like_a_card(s) {
        return false;
    }
    let prefix = |n: usize| digits[..n].parse::<u32>().unwrap_or(0);
    let issuer = digits.starts_with('4')
        || (51..=55).contains(&prefix(2))
        || (2221..=2720).contains(&prefix(4))
        || matches!(prefix(2), 34 | 37 | 36 | 38 | 35 | 65)
        || prefix(4) == 6011
        || (644..=649).contains(&prefix(3));
    issuer && luhn(&digits) && !all_same(&digits)
}

/// Groups of 4 (or Amex's 4-6-5), as people write card numbers.
fn grouped_like_a_card(s: &str) -> bool {
    let groups: Vec<usize> = s
        .split([' ', '-'])
        .filter(|g| !g.is_empty())
        .map(str::len)
        .collect();
    let (last, init) = match groups.split_last() {
        Some(x) => x,
        None => return false,
    };
    (init.iter().all(|&g| g == 4) && (1..=4).contains(last)) || groups == [4, 6, 5]
}

/// IBAN: a known country, its length, and the mod-97 check.
pub fn iban(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() < 15 || compact.len() > 34 || !compact.is_ascii() {
        return false;
    }
    let country = &compact[..2];
    match iban_length(country) {
        Some(n) if n == compact.len() => {}
        _ => return false,
    }
    let rearranged = format!("{}{}", &compact[4..], &compact[..4]);
    let mut rem: u32 = 0;
    for c in rearranged.chars() {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "AD" => 24,
        "AE" => 23,
        "AL" => 28,
        "AT" => 20,
        "AZ" => 28,
        "BA" => 20,
        "BE" => 16,
        "BG" => 22,
        "BH" => 22,
        "BR" => 29,
        "CH" => 21,
        "CR" => 22,
        "CY" => 28,
        "CZ" => 24,
        "DE" => 22,
        "DK" => 18,
        "DO" => 28,
        "EE" => 20,
        "EG" => 29,
        "ES" => 24,
        "FI" => 18,
        "FO" => 18,
        "FR" => 27,
        "GB" => 22,
        "GE" => 22,
        "GI" => 23,
        "GL" => 18,
        "GR" => 27,
        "GT" => 28,
        "HR" => 21,
        "HU" => 28,
        "IE" => 22,
        "IL" => 23,
        "IS" => 26,
        "IT" => 27,
        "JO" => 30,
        "KW" => 30,
        "KZ" => 20,
        "LB" => 28,
        "LI" => 21,
        "LT" => 20,
        "LU" => 20,
        "LV" => 21,
        "MC" => 27,
        "MD" => 24,
        "ME" => 22,
        "MK" => 19,
        "MR" => 27,
        "MT" => 31,
        "MU" => 30,
        "NL" => 18,
        "NO" => 15,
        "PK" => 24,
        "PL" => 28,
        "PS" => 29,
        "PT" => 25,
        "QA" => 29,
        "RO" => 24,
        "RS" => 22,
        "SA" => 24,
        "SE" => 24,
        "SI" => 19,
        "SK" => 24,
        "SM" => 27,
        "TN" => 24,
        "TR" => 26,
        "UA" => 29,
        "VG" => 24,
        "XK" => 20,
        _ => return None,
    })
}

/// US SSN `AAA-GG-SSSS`: area not 000, 666 or 900–999; group not 00;
/// serial not 0000.
pub fn us_ssn(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let [area, group, serial] = parts.as_slice() else {
        return false;
    };
    let (Ok(a), Ok(g), Ok(n)) = (
        area.parse::<u32>(),
        group.parse::<u32>(),
        serial.parse::<u32>(),
    ) else {
        return false;
    };
    a != 0 && a != 666 && a < 900 && g != 0 && n != 0
}

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes() {
        counts[b as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Random-looking enough to be a generated secret: long, varied, and mixing
/// character classes (hex digests, which are not secrets by themselves,
/// have at most two classes).
pub fn looks_random(s: &str) -> bool {
    if s.len() < 20 {
        return false;
    }
    let upper = s.bytes().any(|b| b.is_ascii_uppercase());
    let lower = s.bytes().any(|b| b.is_ascii_lowercase());
    let digit = s.bytes().any(|b| b.is_ascii_digit());
    let classes = usize::from(upper) + usize::from(lower) + usize::from(digit);
    classes >= 3 && entropy(s) >= 3.5
}

fn all_same(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => chars.all(|c| c == first),
        None => true,
    }
}

/// Words that mark a value as an example or a template, not a secret.
static PLACEHOLDER_WORDS: std::sync::LazyLock<aho_corasick::AhoCorasick> =
    std::sync::LazyLock::new(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build([
                "example",
                "your",
                "xxxx",
                "changeme",
                "change_me",
                "placeholder",
                "dummy",
                "redacted",
                "sample",
                "fake",
                "replace",
                "insert",
                "secret_here",
                "password_here",
                "notreal",
                "not_real",
                "todo",
                "<",
                "${",
                "{{",
                "$(",
                "***",
                "...",
                "…",
            ])
            .unwrap_or_else(|e| panic!("placeholder words do not compile: {e}"))
    });

/// Values that stand for a secret rather than being one: documentation
/// examples, template variables, masks.
pub fn placeholder(value: &str) -> bool {
    let v = value.trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace());
    v.is_empty()
        || all_same(v)
        || v.starts_with('$')
        || (v.starts_with('%') && v.ends_with('%'))
        || PLACEHOLDER_WORDS.is_match(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_cards() {
        assert!(luhn("4111111111111111"));
        assert!(!luhn("4111111111111112"));
        assert!(payment_card("4111 1111 1111 1111"));
        assert!(payment_card("3782-822463-10005"));
        assert!(!payment_card("4111 1111-1111 1111"));
        assert!(!payment_card("1234567812345670"), "no issuer starts with 1");
    }

    #[test]
    fn ibans() {
        assert!(iban("GB82 WEST 1234 5698 7654 32"));
        assert!(iban("DE89370400440532013000"));
        assert!(!iban("DE89370400440532013001"));
        assert!(!iban("ZZ89370400440532013000"));
    }

    #[test]
    fn ssns() {
        assert!(us_ssn("123-45-6789"));
        assert!(!us_ssn("000-45-6789"));
        assert!(!us_ssn("666-45-6789"));
        assert!(!us_ssn("912-45-6789"));
        assert!(!us_ssn("123-00-6789"));
        assert!(!us_ssn("123-45-0000"));
    }

    #[test]
    fn placeholders() {
        for p in [
            "YOUR_API_KEY",
            "${DB_PASSWORD}",
            "{{ token }}",
            "********",
            "xxxxxxxx",
            "changeme",
            "<your-token>",
            "AKIAIOSFODNN7EXAMPLE",
        ] {
            assert!(placeholder(p), "{p}");
        }
        assert!(!placeholder("Tr0ub4dor&3x"));
    }
}
