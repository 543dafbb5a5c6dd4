//! chrF2 exactly as sacrebleu 2.x computes it (`sacrebleu/metrics/chrf.py`, defaults
//! `char_order=6, word_order=0, beta=2, lowercase=False, whitespace=False,
//! eps_smoothing=False`):
//!
//! - whitespace is removed (`''.join(line.split())`: Python's `str.split()` whitespace, which
//!   is Unicode `White_Space` plus U+001C..U+001F);
//! - for n = 1..6, character n-grams over Unicode scalar values (Python string slicing) are
//!   counted; per order the statistics are `[hyp count (0 if the reference has no n-grams of
//!   that order), ref count, clipped matches]`;
//! - **effective order**: only orders where both sides have n-grams are averaged; precision
//!   and recall are averaged separately, then combined as `F_β` (β = 2) and scaled to 0–100.
//!
//! Corpus chrF sums the statistics over segments before computing the score (not the mean of
//! sentence scores), again as sacrebleu does.

use std::collections::HashMap;

/// Character n-gram order of chrF.
pub const CHAR_ORDER: usize = 6;
/// β of chrF2 (recall weighted β² = 4 times precision).
pub const BETA: f64 = 2.0;

/// Summed n-gram statistics per order `n = 1..=6` (index `n − 1`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChrfStats {
    /// Hypothesis n-grams (0 where the reference has none of that order).
    pub hyp: [u64; CHAR_ORDER],
    /// Reference n-grams.
    pub reference: [u64; CHAR_ORDER],
    /// Clipped matches.
    pub matches: [u64; CHAR_ORDER],
}

/// Python's `str.isspace()` for one character.
fn python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn strip_spaces(s: &str) -> Vec<char> {
    s.chars().filter(|&c| !python_space(c)).collect()
}

impl ChrfStats {
    /// Statistics of one hypothesis against one reference.
    pub fn new(hypothesis: &str, reference: &str) -> Self {
        let hyp = strip_spaces(hypothesis);
        let refc = strip_spaces(reference);
        let mut stats = ChrfStats::default();
        let mut ref_counts: HashMap<&[char], u64> = HashMap::new();
        for n in 1..=CHAR_ORDER {
            ref_counts.clear();
            let ref_total = refc.len().saturating_sub(n - 1) as u64;
            for g in refc.windows(n) {
                *ref_counts.entry(g).or_insert(0) += 1;
            }
            let hyp_total = hyp.len().saturating_sub(n - 1) as u64;
            let mut matches = 0;
            // Clipped matches: each hypothesis n-gram consumes one reference occurrence.
            for g in hyp.windows(n) {
                if let Some(c) = ref_counts.get_mut(g)
                    && *c > 0
                {
                    *c -= 1;
                    matches += 1;
                }
            }
            // sacrebleu: `hyp_count if ref_ngrams else 0`.
            stats.hyp[n - 1] = if ref_total == 0 { 0 } else { hyp_total };
            stats.reference[n - 1] = ref_total;
            stats.matches[n - 1] = matches;
        }
        stats
    }

    /// Adds another segment's statistics (corpus chrF).
    pub fn add(&mut self, other: &ChrfStats) {
        for i in 0..CHAR_ORDER {
            self.hyp[i] += other.hyp[i];
            self.reference[i] += other.reference[i];
            self.matches[i] += other.matches[i];
        }
    }

    /// chrF2 in 0–100 (sacrebleu's `_compute_f_score` with effective-order averaging).
    pub fn score(&self) -> f64 {
        let factor = BETA * BETA;
        let (mut avg_prec, mut avg_rec, mut effective) = (0.0, 0.0, 0usize);
        for i in 0..CHAR_ORDER {
            let (h, r, m) = (self.hyp[i], self.reference[i], self.matches[i]);
            if h > 0 && r > 0 {
                avg_prec += m as f64 / h as f64;
                avg_rec += m as f64 / r as f64;
                effective += 1;
            }
        }
        if effective == 0 {
            return 0.0;
        }
        avg_prec /= effective as f64;
        avg_rec /= effective as f64;
        if avg_prec + avg_rec == 0.0 {
            return 0.0;
        }
        // Same operation order as sacrebleu, so results agree to the last bits.
        let mut score = (1.0 + factor) * avg_prec * avg_rec;
        score /= (factor * avg_prec) + avg_rec;
        100.0 * score
    }
}

/// Sentence-level chrF2 of a hypothesis against one reference.
pub fn sentence_chrf(hypothesis: &str, reference: &str) -> f64 {
    ChrfStats::new(hypothesis, reference).score()
}

/// Corpus-level chrF2 over `(hypothesis, reference)` pairs (statistics summed, then scored).
pub fn corpus_chrf<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> f64 {
    let mut total = ChrfStats::default();
    for (h, r) in pairs {
        total.add(&ChrfStats::new(h, r));
    }
    total.score()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_and_disjoint() {
        assert_eq!(sentence_chrf("the cat sat", "the cat sat"), 100.0);
        assert_eq!(sentence_chrf("abc", "xyz"), 0.0);
        assert_eq!(sentence_chrf("", "abc"), 0.0);
        assert_eq!(sentence_chrf("abc", ""), 0.0);
        assert_eq!(sentence_chrf("", ""), 0.0);
    }

    #[test]
    fn whitespace_is_removed_python_style() {
        assert_eq!(sentence_chrf("a b\tc\u{3000}d", "abcd"), 100.0);
        assert_eq!(sentence_chrf("ab\u{1f}cd", "abcd"), 100.0); // Python: '\x1f'.isspace()
        assert!(sentence_chrf("ab\u{200b}cd", "abcd") < 100.0); // zero-width space is not
    }

    #[test]
    fn reference_without_ngrams_of_an_order_zeroes_hyp_count() {
        let s = ChrfStats::new("abcdef", "ab");
        assert_eq!(s.reference, [2, 1, 0, 0, 0, 0]);
        assert_eq!(s.hyp, [6, 5, 0, 0, 0, 0]);
        assert_eq!(s.matches, [2, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn clipped_matches() {
        let s = ChrfStats::new("aaaa", "aa");
        assert_eq!(s.matches[0], 2);
        assert_eq!(s.matches[1], 1);
    }
}
