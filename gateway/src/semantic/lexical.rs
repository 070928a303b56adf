//! The fallback matcher when no model is configured: TF-IDF cosine over stemmed words.
//!
//! It only sees shared words, never meaning (`project sales next quarter` and `forecast
//! revenue` share none), so routes need examples worded like the tools they should catch.
//! What it does well: word order, case, separators and simple inflections do not matter
//! (`forecasting` meets `forecast`, `accounts` meets `account`).

use std::collections::HashMap;

use super::intent_text::words;

/// A sparse, L2-normalised term vector.
type TermVector = HashMap<String, f32>;

/// The examples of every route, vectorised once.
#[derive(Debug)]
pub(crate) struct LexicalIndex {
    /// Inverse document frequency of each term seen in an example.
    idf: HashMap<String, f32>,
    /// The weight of a term no example has: the rarest possible, so that words only the
    /// intent has weigh fully against it (`analyze q3 budget` is not `analyze budget`).
    unseen_idf: f32,
    /// (group, vector) per example; `group` indexes the matcher's routes.
    examples: Vec<(usize, TermVector)>,
}

impl LexicalIndex {
    /// Indexes `(group, example text)` pairs.
    pub(crate) fn new(examples: &[(usize, &str)]) -> Self {
        let docs: Vec<(usize, Vec<String>)> =
            examples.iter().map(|&(g, t)| (g, terms(t))).collect();
        let mut df: HashMap<&str, usize> = HashMap::new();
        for (_, doc_terms) in &docs {
            for term in doc_terms {
                *df.entry(term.as_str()).or_default() += 1;
            }
        }
        // Smoothed IDF (as scikit-learn's): ln((1 + N) / (1 + df)) + 1, never zero, so a
        // word every example shares still counts a little.
        let n = docs.len() as f32;
        let idf_of = |df: f32| ((1.0 + n) / (1.0 + df)).ln() + 1.0;
        let idf: HashMap<String, f32> = df
            .iter()
            .map(|(term, &count)| (term.to_string(), idf_of(count as f32)))
            .collect();
        let mut index = LexicalIndex {
            idf,
            unseen_idf: idf_of(0.0),
            examples: Vec::new(),
        };
        index.examples = docs
            .iter()
            .map(|(g, doc_terms)| (*g, index.vector(doc_terms)))
            .collect();
        index
    }

    /// The best score of each group (`groups` of them) for `text`; 0 for no shared word.
    pub(crate) fn scores(&self, text: &str, groups: usize) -> Vec<f32> {
        let v = self.vector(&terms(text));
        let mut best = vec![0.0f32; groups];
        for (g, example) in &self.examples {
            let dot: f32 = v
                .iter()
                .filter_map(|(t, w)| example.get(t).map(|e| w * e))
                .sum();
            if let Some(b) = best.get_mut(*g) {
                *b = b.max(dot);
            }
        }
        best
    }

    fn vector(&self, terms: &[String]) -> TermVector {
        // Binary term frequency: hints and examples are a few words, a repeat means little.
        let mut v: TermVector = terms
            .iter()
            .map(|t| {
                let w = self.idf.get(t).copied().unwrap_or(self.unseen_idf);
                (t.clone(), w)
            })
            .collect();
        let norm = v.values().map(|w| w * w).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.values_mut().for_each(|w| *w /= norm);
        }
        v
    }
}

/// Words too common to say anything about a route. Deliberately short: verbs like `get`
/// and `list` do distinguish tools.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it", "its", "me",
    "my", "of", "on", "or", "our", "s", "the", "this", "to", "with", "your",
];

/// The stemmed, de-duplicated terms of a text.
pub(crate) fn terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = words(text)
        .iter()
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .map(|w| stem(w))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A tiny suffix stripper, enough for English verbs and plurals in tool names: `-ies` →
/// `-y`, then one of `-ing`, `-ed`, `-s` (with a doubled final consonant undone:
/// `resetting` → `reset`), then a final `-e` (`analyze`, `analyzed`, `analyzing` →
/// `analyz`). Short words are left alone so `used` and `bus` survive. Not Porter: it only
/// has to map a tool's wording and an example's onto the same string.
pub(crate) fn stem(word: &str) -> String {
    let mut w = word.to_string();
    if w.len() > 4 && w.ends_with("ies") {
        w.truncate(w.len() - 3);
        w.push('y');
        return w;
    }
    let stripped = if w.len() > 5 && w.ends_with("ing") {
        w.truncate(w.len() - 3);
        true
    } else if w.len() > 4 && w.ends_with("ed") {
        w.truncate(w.len() - 2);
        true
    } else {
        if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") {
            w.truncate(w.len() - 1);
        }
        false
    };
    let bytes = w.as_bytes();
    // ASCII only: truncating one byte must not cut a multi-byte character.
    if stripped
        && bytes.len() > 3
        && bytes[bytes.len() - 1].is_ascii_alphabetic()
        && bytes[bytes.len() - 1] == bytes[bytes.len() - 2]
        && !b"lsz".contains(&bytes[bytes.len() - 1])
        && !b"aeiou".contains(&bytes[bytes.len() - 1])
    {
        w.truncate(w.len() - 1);
    }
    if w.len() > 4 && w.ends_with('e') {
        w.truncate(w.len() - 1);
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_inflections_together() {
        for (a, b) in [
            ("forecasting", "forecast"),
            ("forecasts", "forecast"),
            ("forecasted", "forecast"),
            ("analyzing", "analyze"),
            ("analyzed", "analyzes"),
            ("resetting", "reset"),
            ("accounts", "account"),
            ("queries", "query"),
            ("passwords", "password"),
            ("unlocked", "unlock"),
        ] {
            assert_eq!(stem(a), stem(b), "{a} vs {b}");
        }
        // Left alone: too short, or not a suffix.
        assert_eq!(stem("used"), "used");
        assert_eq!(stem("bus"), "bus");
        assert_eq!(stem("address"), "address");
        assert_eq!(stem("status"), "status");
        assert_eq!(stem("billing"), "bill");
        assert_eq!(stem("größe"), "größ");
        assert_eq!(stem("ÿÿing"), "ÿÿ");
    }

    #[test]
    fn terms_drop_stop_words_and_duplicates() {
        assert_eq!(
            terms("Reset a user's password"),
            ["password", "reset", "user"]
        );
        assert_eq!(terms("forecast_forecasts"), ["forecast"]);
        assert!(terms("the of a").is_empty());
    }

    #[test]
    fn scores_are_cosines_per_group() {
        let index = LexicalIndex::new(&[
            (0, "analyze budget"),
            (0, "forecast revenue"),
            (1, "reset a user's password"),
            (1, "unlock an account"),
        ]);
        let s = index.scores("forecasting revenue", 2);
        assert!((s[0] - 1.0).abs() < 1e-6, "{s:?}");
        assert_eq!(s[1], 0.0);
        // An extra word the examples lack lowers the score but keeps the route ahead.
        let s = index.scores("analyze q3 budget", 2);
        assert!(s[0] > 0.7 && s[0] < 0.9, "{s:?}");
        assert_eq!(index.scores("get weather", 2), [0.0, 0.0]);
        assert_eq!(index.scores("", 2), [0.0, 0.0]);
    }
}
