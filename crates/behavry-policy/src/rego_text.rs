//! Just enough lexing of Rego source to find the package declaration and to
//! rename `data.` references, without touching comments or string literals.
//! Used to give package errors a line number and to move a tenant's modules
//! into their own namespace inside a shared OPA.

use std::ops::Range;

/// The `package` declaration of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackageDecl {
    /// Byte range of the package path (after `package `, before any comment).
    pub range: Range<usize>,
    /// The path with whitespace removed, e.g. `behavry.policies.x`.
    pub path: String,
    /// 1-based line and column of the path.
    pub line: u32,
    pub col: u32,
}

/// Positions of code (outside comments and strings) in `src`, as a list of
/// byte ranges.
fn code_spans(src: &str) -> Vec<Range<usize>> {
    let bytes = src.as_bytes();
    let mut spans = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                spans.push(start..i);
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                start = i;
            }
            b'"' => {
                spans.push(start..i);
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                start = i;
            }
            b'`' => {
                spans.push(start..i);
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
                i = (i + 1).min(bytes.len());
                start = i;
            }
            _ => i += 1,
        }
    }
    spans.push(start..bytes.len());
    spans.retain(|r| !r.is_empty());
    spans
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn line_col(src: &str, at: usize) -> (u32, u32) {
    let before = &src[..at];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |p| p + 1) + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(col).unwrap_or(u32::MAX),
    )
}

/// Finds the first `package` keyword in code and the path that follows it on
/// the same line.
pub(crate) fn find_package(src: &str) -> Option<PackageDecl> {
    let bytes = src.as_bytes();
    for span in code_spans(src) {
        let text = &src[span.clone()];
        let mut search = 0;
        while let Some(found) = text[search..].find("package") {
            let at = span.start + search + found;
            let end = at + "package".len();
            search += found + "package".len();
            let before_ok = at == 0 || !is_ident(bytes[at - 1]);
            let after_ok = end < bytes.len() && (bytes[end] == b' ' || bytes[end] == b'\t');
            if !(before_ok && after_ok) {
                continue;
            }
            let mut path_start = end;
            while path_start < bytes.len()
                && (bytes[path_start] == b' ' || bytes[path_start] == b'\t')
            {
                path_start += 1;
            }
            let mut path_end = path_start;
            while path_end < bytes.len() && !matches!(bytes[path_end], b'\n' | b'\r' | b'#') {
                path_end += 1;
            }
            while path_end > path_start && bytes[path_end - 1].is_ascii_whitespace() {
                path_end -= 1;
            }
            let (line, col) = line_col(src, path_start);
            return Some(PackageDecl {
                range: path_start..path_end,
                path: src[path_start..path_end]
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect(),
                line,
                col,
            });
        }
    }
    None
}

/// Replaces the package path with `new_path`.
pub(crate) fn replace_package(src: &str, decl: &PackageDecl, new_path: &str) -> String {
    let mut out = String::with_capacity(src.len() + new_path.len());
    out.push_str(&src[..decl.range.start]);
    out.push_str(new_path);
    out.push_str(&src[decl.range.end..]);
    out
}

/// Rewrites references to the document `from` (e.g. `data.behavry.policies`)
/// into `to`, in code only. A match must start and end at identifier
/// boundaries, so `data.behavry.policies_old` is left alone.
pub(crate) fn rewrite_refs(src: &str, from: &str, to: &str) -> String {
    let bytes = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut copied = 0;
    for span in code_spans(src) {
        let text = &src[span.clone()];
        let mut search = 0;
        while let Some(found) = text[search..].find(from) {
            let at = span.start + search + found;
            let end = at + from.len();
            search += found + from.len();
            let before_ok = at == 0 || !(is_ident(bytes[at - 1]) || bytes[at - 1] == b'.');
            let after_ok = end >= bytes.len() || !is_ident(bytes[end]);
            if before_ok && after_ok {
                out.push_str(&src[copied..at]);
                out.push_str(to);
                copied = end;
            }
        }
    }
    out.push_str(&src[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_package_after_comments() {
        let src = "# package fake.one\n\n  package  behavry.policies.x # trailing\nallow := true\n";
        let decl = find_package(src).unwrap();
        assert_eq!(decl.path, "behavry.policies.x");
        assert_eq!((decl.line, decl.col), (3, 12));
        assert_eq!(&src[decl.range.clone()], "behavry.policies.x");
        assert_eq!(
            replace_package(src, &decl, "behavry.t_a.policies.x"),
            "# package fake.one\n\n  package  behavry.t_a.policies.x # trailing\nallow := true\n"
        );
    }

    #[test]
    fn ignores_package_in_strings_and_identifiers() {
        assert_eq!(find_package("x := \"package a.b\"\n"), None);
        assert_eq!(find_package("subpackage a\n"), None);
        assert_eq!(find_package(""), None);
        assert_eq!(find_package("package"), None);
    }

    #[test]
    fn rewrites_only_code_references() {
        let src = concat!(
            "package behavry.policies.x\n",
            "import data.behavry.policies.base\n",
            "# data.behavry.policies in a comment\n",
            "m := \"data.behavry.policies in a string\"\n",
            "r := `data.behavry.policies raw`\n",
            "d := data.behavry.policies[\"y\"].deny\n",
            "o := data.behavry.policies_old.z\n",
            "q := xdata.behavry.policies\n",
        );
        let out = rewrite_refs(src, "data.behavry.policies", "data.behavry.t_1.policies");
        assert_eq!(
            out,
            concat!(
                "package behavry.policies.x\n",
                "import data.behavry.t_1.policies.base\n",
                "# data.behavry.policies in a comment\n",
                "m := \"data.behavry.policies in a string\"\n",
                "r := `data.behavry.policies raw`\n",
                "d := data.behavry.t_1.policies[\"y\"].deny\n",
                "o := data.behavry.policies_old.z\n",
                "q := xdata.behavry.policies\n",
            )
        );
    }

    #[test]
    fn survives_unterminated_strings_and_escapes() {
        let src = "x := \"a\\\"b\npackage p.q\ny := `unterminated";
        assert_eq!(find_package(src).unwrap().path, "p.q");
        let _ = rewrite_refs(src, "data.p", "data.r");
        let _ = rewrite_refs("\"\\", "data.p", "data.r");
        let _ = find_package("\"\\");
    }
}
