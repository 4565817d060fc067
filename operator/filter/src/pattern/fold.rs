//! `equals-ignore-case` as EventBridge does it: each character of the pattern matches
//! its own lower-case form or its own upper-case form, nothing else. So `ß` matches `ß`
//! and `SS`, while `k` matches `k` and `K` but not the Kelvin sign `K`.

/// A pattern string compiled for case-insensitive comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Folded {
    /// Only ASCII: compared byte by byte ignoring ASCII case.
    Ascii(Box<str>),
    /// One (lower, upper) pair per character of the pattern.
    Unicode(Vec<(Box<str>, Box<str>)>),
}

impl Folded {
    pub(crate) fn new(pattern: &str) -> Self {
        if pattern.is_ascii() {
            return Folded::Ascii(pattern.into());
        }
        Folded::Unicode(
            pattern
                .chars()
                .map(|c| {
                    (
                        c.to_lowercase().collect::<String>().into(),
                        c.to_uppercase().collect::<String>().into(),
                    )
                })
                .collect(),
        )
    }

    /// `text` equals the pattern.
    pub(crate) fn equals(&self, text: &str) -> bool {
        match self {
            Folded::Ascii(p) => text.len() == p.len() && text.eq_ignore_ascii_case(p),
            Folded::Unicode(forms) => forward(forms, text.as_bytes(), true),
        }
    }

    /// `text` starts with the pattern.
    pub(crate) fn is_prefix_of(&self, text: &str) -> bool {
        match self {
            Folded::Ascii(p) => text
                .as_bytes()
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p.as_bytes())),
            Folded::Unicode(forms) => forward(forms, text.as_bytes(), false),
        }
    }

    /// `text` ends with the pattern.
    pub(crate) fn is_suffix_of(&self, text: &str) -> bool {
        match self {
            Folded::Ascii(p) => text
                .len()
                .checked_sub(p.len())
                .and_then(|start| text.as_bytes().get(start..))
                .is_some_and(|tail| tail.eq_ignore_ascii_case(p.as_bytes())),
            Folded::Unicode(forms) => backward(forms, text.as_bytes()),
        }
    }
}

/// Whether `forms` match at the start of `text` (and reach its end when `whole`).
/// Only a character whose two forms both match here branches; that almost never
/// happens, so the recursion stays shallow.
fn forward(forms: &[(Box<str>, Box<str>)], text: &[u8], whole: bool) -> bool {
    let mut rest = text;
    for (i, (lower, upper)) in forms.iter().enumerate() {
        let by_lower = rest.strip_prefix(lower.as_bytes());
        let by_upper = if upper == lower {
            None
        } else {
            rest.strip_prefix(upper.as_bytes())
        };
        rest = match (by_lower, by_upper) {
            (Some(a), Some(b)) => {
                return forward(&forms[i + 1..], a, whole) || forward(&forms[i + 1..], b, whole);
            }
            (Some(next), None) | (None, Some(next)) => next,
            (None, None) => return false,
        };
    }
    !whole || rest.is_empty()
}

/// Whether `forms` match at the end of `text`.
fn backward(forms: &[(Box<str>, Box<str>)], text: &[u8]) -> bool {
    let mut rest = text;
    for (i, (lower, upper)) in forms.iter().enumerate().rev() {
        let by_lower = rest.strip_suffix(lower.as_bytes());
        let by_upper = if upper == lower {
            None
        } else {
            rest.strip_suffix(upper.as_bytes())
        };
        rest = match (by_lower, by_upper) {
            (Some(a), Some(b)) => return backward(&forms[..i], a) || backward(&forms[..i], b),
            (Some(next), None) | (None, Some(next)) => next,
            (None, None) => return false,
        };
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii() {
        let f = Folded::new("EventB");
        assert!(f.is_prefix_of("eventbridge"));
        assert!(f.is_prefix_of("EVENTBRIDGE"));
        assert!(!f.is_prefix_of("Event"));
        assert!(Folded::new(".png").is_suffix_of("FILE.PNG"));
        assert!(!Folded::new(".png").is_suffix_of("png"));
        assert!(Folded::new("abc").equals("aBC"));
        assert!(!Folded::new("abc").equals("aBCd"));
        assert!(!Folded::new("k").equals("\u{212a}"), "Kelvin sign is not K");
    }

    #[test]
    fn each_character_matches_its_lower_or_upper_form() {
        assert!(Folded::new("straße").equals("STRASSE"));
        assert!(Folded::new("straße").equals("Straße"));
        assert!(!Folded::new("strasse").equals("straße"));
        assert!(Folded::new("ÄBC").equals("äbc"));
        assert!(!Folded::new("ÄBC").equals("äbcd"));
        assert!(Folded::new("é").is_prefix_of("Éclair"));
        assert!(Folded::new("ÉCLAIR").is_suffix_of("un éclair"));
        assert!(!Folded::new("ÉCLAIR").is_suffix_of("clair"));
        assert!(Folded::new("🚀").equals("🚀"));
    }
}
