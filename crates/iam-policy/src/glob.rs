//! `*` and `?` wildcards as IAM uses them in actions, resources, `StringLike` and `ArnLike`.
//!
//! A pattern is compiled once into tokens (maximal literal runs, `*`, `?`); matching is the
//! classic greedy scan that backtracks to the last `*`, so it is linear for the patterns IAM
//! documents contain and never recursive. `?` matches exactly one character (not one byte).

/// One token of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// Characters that must appear as they are (compared case-insensitively when asked).
    Lit(Box<str>),
    /// `*`: any run of characters, empty included.
    Star,
    /// `?`: exactly one character.
    One,
}

/// A compiled wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    toks: Box<[Tok]>,
}

impl Glob {
    /// Compiles `pattern`, where `*` and `?` are wildcards.
    pub(crate) fn new(pattern: &str) -> Self {
        let mut b = TokBuilder::default();
        b.push_pattern(pattern);
        b.finish()
    }

    /// Builds a glob from tokens assembled by a [`TokBuilder`].
    pub(crate) fn from_toks(toks: Vec<Tok>) -> Self {
        Glob {
            toks: toks.into_boxed_slice(),
        }
    }

    /// Whether `text` matches, case-sensitively.
    pub(crate) fn matches(&self, text: &str) -> bool {
        glob_match(&self.toks, text, false)
    }

    /// Whether `text` matches with ASCII letters compared case-insensitively (the pattern must
    /// have been compiled from lowercase text).
    pub(crate) fn matches_ignore_ascii_case(&self, text: &str) -> bool {
        glob_match(&self.toks, text, true)
    }
}

/// Assembles tokens from pattern text (wildcards active) and literal text (wildcards inert:
/// substituted policy variables and `${*}`, `${?}`, `${$}`).
#[derive(Debug, Default)]
pub(crate) struct TokBuilder {
    toks: Vec<Tok>,
    lit: String,
}

impl TokBuilder {
    pub(crate) fn push_pattern(&mut self, pattern: &str) {
        for c in pattern.chars() {
            match c {
                '*' => {
                    self.flush();
                    // `**` is the same as `*`.
                    if self.toks.last() != Some(&Tok::Star) {
                        self.toks.push(Tok::Star);
                    }
                }
                '?' => {
                    self.flush();
                    self.toks.push(Tok::One);
                }
                c => self.lit.push(c),
            }
        }
    }

    pub(crate) fn push_literal(&mut self, text: &str) {
        self.lit.push_str(text);
    }

    fn flush(&mut self) {
        if !self.lit.is_empty() {
            let lit = std::mem::take(&mut self.lit);
            self.toks.push(Tok::Lit(lit.into_boxed_str()));
        }
    }

    pub(crate) fn finish(mut self) -> Glob {
        self.flush();
        Glob::from_toks(self.toks)
    }
}

fn char_len_at(text: &str, pos: usize) -> usize {
    text[pos..].chars().next().map_or(1, char::len_utf8)
}

fn starts_with(text: &[u8], lit: &[u8], ignore_ascii_case: bool) -> bool {
    if text.len() < lit.len() {
        return false;
    }
    let head = &text[..lit.len()];
    if ignore_ascii_case {
        head.eq_ignore_ascii_case(lit)
    } else {
        head == lit
    }
}

fn glob_match(toks: &[Tok], text: &str, ignore_ascii_case: bool) -> bool {
    let bytes = text.as_bytes();
    let mut ti = 0usize;
    let mut pos = 0usize;
    // (token index after the last `*`, text position that `*` currently stops at)
    let mut star: Option<(usize, usize)> = None;
    loop {
        if let Some(tok) = toks.get(ti) {
            match tok {
                Tok::Star => {
                    star = Some((ti + 1, pos));
                    ti += 1;
                    continue;
                }
                Tok::One if pos < bytes.len() => {
                    pos += char_len_at(text, pos);
                    ti += 1;
                    continue;
                }
                Tok::Lit(lit) if starts_with(&bytes[pos..], lit.as_bytes(), ignore_ascii_case) => {
                    pos += lit.len();
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        } else if pos == bytes.len() {
            return true;
        }
        match star {
            Some((after, spos)) if spos < bytes.len() => {
                let next = spos + char_len_at(text, spos);
                star = Some((after, next));
                ti = after;
                pos = next;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_iam_documents() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("a*", "abc", true),
            ("a*c", "abc", true),
            ("a*c", "abcd", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("?", "é", true),
            ("*b*b", "abab", true),
            ("*b*b", "aba", false),
            (
                "arn:aws:s3:::*log*",
                "arn:aws:s3:::carlossalazar-logs",
                true,
            ),
            ("Describe*", "describeclusters", false),
            ("", "", true),
            ("", "a", false),
            ("a**b", "ab", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                Glob::new(pattern).matches(text),
                want,
                "{pattern} vs {text}"
            );
        }
    }

    #[test]
    fn ascii_case_is_ignored_only_when_asked() {
        let g = Glob::new("describe*");
        assert!(g.matches_ignore_ascii_case("DescribeClusters"));
        assert!(!g.matches("DescribeClusters"));
    }

    #[test]
    fn literal_text_keeps_wildcards_inert() {
        let mut b = TokBuilder::default();
        b.push_pattern("a/");
        b.push_literal("*");
        b.push_pattern("/*");
        let g = b.finish();
        assert!(g.matches("a/*/x"));
        assert!(!g.matches("a/b/x"));
    }
}
