//! Mistakes found in a mesh file, located by byte span and rendered with file, line and
//! column the way compilers do, so the person who wrote the file can fix it in one pass.

use std::fmt::{self, Write as _};
use std::ops::Range;

/// One mistake in the mesh file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diagnostic {
    /// Byte range in the source; `None` when the mistake has no single place (a missing
    /// section, a certificate that is not on disk).
    pub(crate) span: Option<Range<usize>>,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl Diagnostic {
    pub(crate) fn new(span: impl Into<Option<Range<usize>>>, message: impl Into<String>) -> Self {
        Self {
            span: span.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..offset].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Renders diagnostics as
///
/// ```text
/// error: unknown key `listen_addr` in [[agent]] "demo-agent"
///   --> mesh.toml:12:1
///    |
/// 12 | listen_addr = "127.0.0.1:15001"
///    | ^^^^^^^^^^^
///    = hint: did you mean `listeners`?
/// ```
pub(crate) fn render(origin: &str, source: &str, diagnostic: &Diagnostic) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "error: {}", diagnostic.message);
    match &diagnostic.span {
        Some(span) => {
            let (line, column) = line_col(source, span.start);
            let gutter = line.to_string().len();
            let pad = " ".repeat(gutter);
            let _ = writeln!(out, "{pad}--> {origin}:{line}:{column}");
            let text = source.lines().nth(line - 1).unwrap_or("");
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{line} | {text}");
            let width = underline_width(source, span, text.chars().count() + 1 - column);
            let marker = format!("{}{}", " ".repeat(column - 1), "^".repeat(width));
            let _ = writeln!(out, "{pad} | {marker}");
            if let Some(hint) = &diagnostic.hint {
                let _ = writeln!(out, "{pad} = hint: {hint}");
            }
        }
        None => {
            let _ = writeln!(out, "  --> {origin}");
            if let Some(hint) = &diagnostic.hint {
                let _ = writeln!(out, "   = hint: {hint}");
            }
        }
    }
    out
}

/// Underline the span, but never past the end of its first line.
fn underline_width(source: &str, span: &Range<usize>, rest_of_line: usize) -> usize {
    let start = floor_char_boundary(source, span.start.min(source.len()));
    let end = floor_char_boundary(source, span.end.min(source.len())).max(start);
    source[start..end]
        .chars()
        .count()
        .clamp(1, rest_of_line.max(1))
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: Levenshtein plus adjacent transpositions, the most
/// common typo (`nmae` for `name`) counting as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i * width + j] = if i == 0 || j == 0 {
                i + j
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (d[(i - 1) * width + j] + 1)
                    .min(d[i * width + j - 1] + 1)
                    .min(d[(i - 1) * width + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(d[(i - 2) * width + j - 2] + 1);
                }
                best
            };
        }
    }
    d[a.len() * width + b.len()]
}

/// All diagnostics of one file, ready to print.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    pub(crate) origin: &'a str,
    pub(crate) source: &'a str,
    pub(crate) diagnostics: &'a [Diagnostic],
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for diagnostic in self.diagnostics {
            writeln!(f, "{}", render(self.origin, self.source, diagnostic))?;
        }
        let n = self.diagnostics.len();
        write!(
            f,
            "{}: {n} mistake{}",
            self.origin,
            if n == 1 { "" } else { "s" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        // 'é' is two bytes: the second '=' is at byte 10 but is the 4th character of line 2.
        assert_eq!(src.rfind('='), Some(10));
        assert_eq!(line_col(src, 10), (2, 4));
        assert_eq!(line_col(src, 9999), (3, 1));
    }

    #[test]
    fn renders_location_underline_and_hint() {
        let src = "[gateway]\nquic_addr = \"x\"\n";
        let start = src.find("quic_addr").unwrap();
        let d = Diagnostic::new(start..start + 9, "unknown key `quic_addr` in [gateway]")
            .hint("did you mean `quic`?");
        let text = render("mesh.toml", src, &d);
        assert!(text.contains("--> mesh.toml:2:1"), "{text}");
        assert!(text.contains("2 | quic_addr = \"x\""), "{text}");
        assert!(text.contains("  | ^^^^^^^^^\n"), "{text}");
        assert!(text.contains("= hint: did you mean `quic`?"), "{text}");
    }

    #[test]
    fn suggests_only_plausible_typos() {
        let keys = ["name", "listeners", "proxy", "cert", "key"];
        assert_eq!(did_you_mean("listener", keys), Some("listeners"));
        assert_eq!(did_you_mean("nmae", keys), Some("name"));
        assert_eq!(did_you_mean("upstream_timeout", keys), None);
    }
}
