//! Input rules shared by the API and the command line.

/// Minimum length of any admin password.
pub const MIN_PASSWORD_LEN: usize = 12;

/// Passwords that meet the length rule but are still the first ones an
/// attacker tries.
const COMMON_PASSWORDS: &[&str] = &[
    "123456789012",
    "password1234",
    "passwordpassword",
    "adminadminadmin",
    "administrator",
    "qwertyuiopasdf",
    "changemechangeme",
    "letmeinletmein",
    "strong-password-here",
    "strong-password-here-12chars",
];

/// Why a password is not acceptable, or `None` when it is.
pub fn password_problem(password: &str) -> Option<String> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        return Some(format!(
            "password must be at least {MIN_PASSWORD_LEN} characters (got {len})"
        ));
    }
    if len > 256 {
        return Some("password must be at most 256 characters".into());
    }
    let lower = password.to_lowercase();
    if COMMON_PASSWORDS.contains(&lower.as_str()) {
        return Some("password is too common; choose another".into());
    }
    let first = password.chars().next();
    if password.chars().all(|c| Some(c) == first) {
        return Some("password must not repeat a single character".into());
    }
    None
}

/// Derives a URL-safe slug (`[a-z0-9-]+`) from an organisation name.
/// Returns `None` when nothing usable remains (e.g. a name of only symbols).
pub fn slugify(name: &str) -> Option<String> {
    let mut slug = String::with_capacity(name.len());
    let mut pending_dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if pending_dash && !slug.is_empty() {
                slug.push('-');
            }
            pending_dash = false;
            slug.push(c.to_ascii_lowercase());
        } else {
            pending_dash = true;
        }
        if slug.len() >= 48 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-').to_string();
    (!slug.is_empty()).then_some(slug)
}

/// Longest slug accepted.
pub const MAX_SLUG_LEN: usize = 63;

/// The first of `base`, `base-2`, `base-3`, … that is not in `taken`. The
/// base is shortened as needed so that a suffixed slug stays within
/// [`MAX_SLUG_LEN`].
pub fn free_slug(base: &str, taken: &[String]) -> String {
    if !taken.iter().any(|s| s == base) {
        return base.to_string();
    }
    (2u64..)
        .map(|n| {
            let suffix = format!("-{n}");
            let keep = base.len().min(MAX_SLUG_LEN - suffix.len());
            format!("{}{suffix}", base[..keep].trim_end_matches('-'))
        })
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or_else(|| base.to_string())
}

/// Slugs are restricted to lowercase letters, digits and dashes.
pub fn is_valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= MAX_SLUG_LEN
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A deliberately simple e-mail check: one `@`, something either side, a dot
/// in the domain, no whitespace. Deliverability is not our concern here.
pub fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("Acme Corp").as_deref(), Some("acme-corp"));
        assert_eq!(slugify("  Ünïcode & Co.  ").as_deref(), Some("n-code-co"));
        assert_eq!(slugify("!!!"), None);
        assert!(is_valid_slug("acme-corp-2"));
        assert!(!is_valid_slug("Acme"));
        assert!(!is_valid_slug("a;drop table"));
        assert!(!is_valid_slug(""));
        let taken = vec!["acme".to_string(), "acme-2".to_string()];
        assert_eq!(free_slug("acme", &taken), "acme-3");
        assert_eq!(free_slug("other", &taken), "other");
        let long = "x".repeat(63);
        let suffixed = free_slug(&long, std::slice::from_ref(&long));
        assert_eq!(suffixed.len(), 63);
        assert!(suffixed.ends_with("-2") && is_valid_slug(&suffixed));
    }

    #[test]
    fn passwords() {
        assert!(password_problem("short").is_some());
        assert!(password_problem("aaaaaaaaaaaaaaaa").is_some());
        assert!(password_problem("Password1234").is_some());
        assert!(password_problem("correct horse battery").is_none());
    }

    #[test]
    fn emails() {
        assert!(is_plausible_email("security@acme.com"));
        assert!(!is_plausible_email("security@acme"));
        assert!(!is_plausible_email("no-at-sign"));
        assert!(!is_plausible_email("a b@acme.com"));
    }
}
