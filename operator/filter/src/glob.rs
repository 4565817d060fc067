//! A small compiled glob shared by CESQL `LIKE` (`%`, `_`) and pattern `wildcard` (`*`).
//!
//! Matching walks the input once and backtracks only to the most recent "many"
//! element, the classic linear-space algorithm: no allocation, no recursion.

use crate::guard::Test;

/// One element of a compiled glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    /// Exactly this character.
    Char(char),
    /// Any single character.
    One,
    /// Any run of characters, including none.
    Many,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Glob {
    elems: Vec<Elem>,
}

impl Glob {
    /// Builds a glob from its elements; consecutive `Many` collapse into one.
    pub(crate) fn new(elems: Vec<Elem>) -> Self {
        let mut out: Vec<Elem> = Vec::with_capacity(elems.len());
        for e in elems {
            if e == Elem::Many && out.last() == Some(&Elem::Many) {
                continue;
            }
            out.push(e);
        }
        Glob { elems: out }
    }

    /// The literal every match equals (a glob without wildcards), starts with (its
    /// leading characters) or else ends with (its trailing characters), if any.
    pub(crate) fn literal_shape(&self) -> Option<(Test, String)> {
        let literal = |e: &Elem| match e {
            Elem::Char(c) => Some(*c),
            _ => None,
        };
        let head: Vec<char> = self.elems.iter().map_while(literal).collect();
        if head.len() == self.elems.len() {
            return Some((Test::Equals, head.into_iter().collect()));
        }
        if !head.is_empty() {
            return Some((Test::Prefix, head.into_iter().collect()));
        }
        let mut tail: Vec<char> = self.elems.iter().rev().map_while(literal).collect();
        if tail.is_empty() {
            return None;
        }
        tail.reverse();
        Some((Test::Suffix, tail.into_iter().collect()))
    }

    /// The glob as one string test, when it is exactly one: no wildcard (equals),
    /// literal then one trailing "many" (prefix), or one leading "many" then literal
    /// (suffix).
    pub(crate) fn exact_shape(&self) -> Option<(Test, String)> {
        let text = |elems: &[Elem]| {
            elems
                .iter()
                .map(|e| match e {
                    Elem::Char(c) => Some(*c),
                    _ => None,
                })
                .collect::<Option<String>>()
        };
        match self.elems.as_slice() {
            [Elem::Many, rest @ ..] if !rest.is_empty() => text(rest).map(|s| (Test::Suffix, s)),
            [rest @ .., Elem::Many] if !rest.is_empty() => text(rest).map(|s| (Test::Prefix, s)),
            all => text(all).map(|s| (Test::Equals, s)),
        }
    }

    /// The glob as bytes with `None` for a wildcard, for the complexity check of
    /// pattern `wildcard`s (which only have runs).
    pub(crate) fn bytes(&self) -> Vec<Option<u8>> {
        let mut out = Vec::with_capacity(self.elems.len());
        for e in &self.elems {
            match e {
                Elem::Char(c) => {
                    let mut buf = [0u8; 4];
                    out.extend(c.encode_utf8(&mut buf).bytes().map(Some));
                }
                Elem::One | Elem::Many => out.push(None),
            }
        }
        out
    }

    /// Whether the glob matches the whole of `input`.
    pub(crate) fn matches(&self, input: &str) -> bool {
        let p = &self.elems;
        let mut pi = 0usize;
        let mut si = 0usize;
        // Where to resume after the latest `Many`: (pattern index after it, input index).
        let mut resume: Option<(usize, usize)> = None;
        while si < input.len() {
            let c = input[si..].chars().next().unwrap_or_default();
            match p.get(pi) {
                Some(Elem::One) => {
                    pi += 1;
                    si += c.len_utf8();
                    continue;
                }
                Some(Elem::Char(pc)) if *pc == c => {
                    pi += 1;
                    si += c.len_utf8();
                    continue;
                }
                Some(Elem::Many) => {
                    pi += 1;
                    resume = Some((pi, si));
                    continue;
                }
                _ => {}
            }
            match resume {
                Some((rp, rs)) => {
                    let skipped = input[rs..].chars().next().unwrap_or_default();
                    let next = rs + skipped.len_utf8();
                    resume = Some((rp, next));
                    pi = rp;
                    si = next;
                }
                None => return false,
            }
        }
        p[pi..].iter().all(|e| *e == Elem::Many)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(s: &str) -> Glob {
        Glob::new(
            s.chars()
                .map(|c| match c {
                    '*' => Elem::Many,
                    '?' => Elem::One,
                    c => Elem::Char(c),
                })
                .collect(),
        )
    }

    #[test]
    fn literal_and_wildcards() {
        assert!(glob("abc").matches("abc"));
        assert!(!glob("abc").matches("abcd"));
        assert!(!glob("abc").matches("ab"));
        assert!(glob("a*c").matches("ac"));
        assert!(glob("a*c").matches("abbbc"));
        assert!(!glob("a*c").matches("abbb"));
        assert!(glob("a?c").matches("abc"));
        assert!(!glob("a?c").matches("ac"));
        assert!(glob("*").matches(""));
        assert!(glob("").matches(""));
        assert!(!glob("").matches("x"));
        assert!(glob("*.png").matches("dir/file.png"));
        assert!(glob("a*b*c").matches("a-b-b-c"));
        assert!(!glob("a*b*c").matches("a-c-b"));
    }

    #[test]
    fn multibyte_characters_count_as_one() {
        assert!(glob("?").matches("é"));
        assert!(glob("h?llo*").matches("hällo wörld"));
        assert!(!glob("??").matches("é"));
    }

    #[test]
    fn literal_shapes() {
        let shape = |s: &str| glob(s).literal_shape();
        let some = |t: Test, v: &str| Some((t, v.to_owned()));
        assert_eq!(shape("abc"), some(Test::Equals, "abc"));
        assert_eq!(shape(""), some(Test::Equals, ""));
        assert_eq!(shape("ab*c"), some(Test::Prefix, "ab"));
        assert_eq!(shape("ab?"), some(Test::Prefix, "ab"));
        assert_eq!(shape("*.png"), some(Test::Suffix, ".png"));
        assert_eq!(shape("?x"), some(Test::Suffix, "x"));
        assert_eq!(shape("*a*"), None);
        assert_eq!(shape("*"), None);

        let exact = |s: &str| glob(s).exact_shape();
        assert_eq!(exact("abc"), some(Test::Equals, "abc"));
        assert_eq!(exact(""), some(Test::Equals, ""));
        assert_eq!(exact("ab*"), some(Test::Prefix, "ab"));
        assert_eq!(exact("*ab"), some(Test::Suffix, "ab"));
        assert_eq!(exact("a*b"), None);
        assert_eq!(exact("ab?"), None);
        assert_eq!(exact("*ab*"), None);
        assert_eq!(exact("*"), None);
    }

    #[test]
    fn backtracking_to_latest_many() {
        assert!(glob("*ab").matches("aaab"));
        assert!(glob("*a*a*a").matches("aaa"));
        assert!(!glob("*a*a*a*a").matches("aaa"));
    }
}
