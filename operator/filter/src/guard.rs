//! Guards: cheap necessary conditions that let [`crate::MatcherSet`] skip filters.
//!
//! A filter's guard is a short list of [`Atom`]s, each a test of one field's value
//! (a string equals, starts with or ends with a literal; a number in `data` lies in a
//! range). Whenever the filter matches an
//! event, at least one of its atoms holds for that event; the converse need not be
//! true, so a filter found through its guard is still evaluated. Guards are derived
//! when a filter is compiled:
//!
//! * `exact`, `prefix`, `suffix` and `filter.attributes` give their own test;
//! * `all` and the top-level list keep the most selective guard of their parts, `any`
//!   unites the guards of all its parts (or has none if one part has none), `not`
//!   has none;
//! * CESQL: `attr = 'lit'`, `attr LIKE 'lit%'` / `'%lit'` / `'lit'`, `attr IN ('a', 'b')`
//!   (for context attributes, always strings), combined through `AND` and `OR`;
//! * patterns: a field whose matchers are all exact strings, `prefix`, `suffix` or
//!   `wildcard` with a literal start or end, on an attribute or at a path in `data`;
//!   in `data` also exact numbers and `numeric` ranges.
//!
//! Every atom of one guard is on a context attribute, or every atom is on the same
//! `data` path: that keeps de-duplication cheap (see `index.rs`).

use crate::event::{Event, Name};
use crate::pattern::Range;

/// Where an atom looks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Field {
    /// A context attribute or extension, by its canonical string form.
    Attribute(Name),
    /// The string at this path of object keys in JSON `data`. An array on the way or at
    /// the end means "any element", which the index does not resolve.
    Data(Vec<String>),
}

/// How an atom compares the field's text with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Test {
    Equals,
    Prefix,
    Suffix,
}

/// What an atom asks of the field's value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Check {
    /// A string (an attribute's canonical text) passes the test with the literal.
    Text(Test, String),
    /// A JSON number (in `data` only) lies in the range.
    Number(Range),
}

/// One test of one field.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Atom {
    pub(crate) field: Field,
    pub(crate) check: Check,
}

impl Atom {
    pub(crate) fn attribute(name: &Name, test: Test, value: &str) -> Self {
        Atom {
            field: Field::Attribute(name.clone()),
            check: Check::Text(test, value.to_owned()),
        }
    }

    /// Whether the atom holds for a field whose value is the string `text`.
    pub(crate) fn accepts_text(&self, text: &str) -> bool {
        match &self.check {
            Check::Text(Test::Equals, value) => text == value,
            Check::Text(Test::Prefix, value) => text.starts_with(value.as_str()),
            Check::Text(Test::Suffix, value) => text.ends_with(value.as_str()),
            Check::Number(_) => false,
        }
    }

    /// Whether the atom holds for a field whose value is the JSON number `n`.
    pub(crate) fn accepts_number(&self, n: f64) -> bool {
        match &self.check {
            Check::Number(range) => range.contains(n),
            Check::Text(..) => false,
        }
    }

    /// Whether an attribute atom holds for `event` (data atoms answer `false`).
    pub(crate) fn holds_for_attribute(&self, event: &Event<'_>) -> bool {
        match &self.field {
            Field::Attribute(name) => event
                .get(name)
                .is_some_and(|v| v.with_str(|s| self.accepts_text(s))),
            Field::Data(_) => false,
        }
    }
}

/// More atoms than this and a guard is not worth indexing.
const MAX_ATOMS: usize = 64;

/// At least one atom holds for every event the filter matches.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Guard {
    atoms: Vec<Atom>,
}

impl Guard {
    pub(crate) fn one(atom: Atom) -> Self {
        Guard { atoms: vec![atom] }
    }

    /// A guard of several alternatives; `None` when it cannot be indexed.
    pub(crate) fn of(atoms: Vec<Atom>) -> Option<Self> {
        let mut guard = Guard {
            atoms: Vec::with_capacity(atoms.len()),
        };
        for atom in atoms {
            if !guard.atoms.contains(&atom) {
                guard.atoms.push(atom);
            }
        }
        guard.is_indexable().then_some(guard)
    }

    pub(crate) fn atoms(&self) -> &[Atom] {
        &self.atoms
    }

    fn is_indexable(&self) -> bool {
        let Some(first) = self.atoms.first() else {
            return false;
        };
        self.atoms.len() <= MAX_ATOMS
            && match &first.field {
                Field::Attribute(_) => self.atoms.iter().all(|a| {
                    matches!(a.field, Field::Attribute(_)) && matches!(a.check, Check::Text(..))
                }),
                data @ Field::Data(_) => self.atoms.iter().all(|a| a.field == *data),
            }
    }

    /// The guard of "`a` or `b`": every atom of both, if that is still indexable.
    pub(crate) fn either(a: Option<Guard>, b: Option<Guard>) -> Option<Guard> {
        let (mut a, b) = (a?, b?);
        a.atoms.extend(b.atoms);
        Guard::of(a.atoms)
    }

    /// The guard of "`a` and `b`": either one will do; keep the more selective.
    pub(crate) fn both(a: Option<Guard>, b: Option<Guard>) -> Option<Guard> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.rank() < a.rank() { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Lower is more selective: equality beats prefix/suffix, `type` beats other
    /// attributes, attributes beat `data` (no path walk), fewer atoms beat more.
    fn rank(&self) -> (u8, usize) {
        let class = self
            .atoms
            .iter()
            .map(|a| match (&a.field, &a.check) {
                (Field::Attribute(Name::Type), Check::Text(Test::Equals, _)) => 0,
                (Field::Attribute(_), Check::Text(Test::Equals, _)) => 1,
                (Field::Data(_), Check::Text(Test::Equals, _)) => 2,
                (Field::Attribute(_), _) => 3,
                (Field::Data(_), _) => 4,
            })
            .max()
            .unwrap_or(u8::MAX);
        (class, self.atoms.len())
    }
}

/// Guards of alternatives: the union of all, or `None` if any has none.
pub(crate) fn any_of(guards: impl IntoIterator<Item = Option<Guard>>) -> Option<Guard> {
    let mut guards = guards.into_iter();
    let first = guards.next()?;
    guards.fold(first, Guard::either)
}

/// Guards of conjuncts: the most selective one.
pub(crate) fn all_of(guards: impl IntoIterator<Item = Option<Guard>>) -> Option<Guard> {
    guards.into_iter().fold(None, Guard::both)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)] // guards combine as options
    fn eq(name: &str, value: &str) -> Option<Guard> {
        Some(Guard::one(Atom::attribute(
            &name.into(),
            Test::Equals,
            value,
        )))
    }

    #[allow(clippy::unnecessary_wraps)]
    fn data(path: &[&str], test: Test, value: &str) -> Option<Guard> {
        Some(Guard::one(Atom {
            field: Field::Data(path.iter().map(|s| (*s).to_owned()).collect()),
            check: Check::Text(test, value.to_owned()),
        }))
    }

    #[test]
    fn conjunction_keeps_the_most_selective() {
        let prefix = Some(Guard::one(Atom::attribute(
            &"source".into(),
            Test::Prefix,
            "/a",
        )));
        assert_eq!(
            all_of([prefix.clone(), eq("tenant", "x")]),
            eq("tenant", "x")
        );
        assert_eq!(
            all_of([eq("tenant", "x"), eq("type", "t")]),
            eq("type", "t")
        );
        assert_eq!(all_of([None, prefix.clone()]), prefix);
        assert_eq!(all_of([None, None]), None);
        let on_data = data(&["a"], Test::Equals, "v");
        assert_eq!(all_of([on_data.clone(), prefix]), on_data);
    }

    #[test]
    fn disjunction_unites_or_gives_up() {
        let both = any_of([eq("type", "a"), eq("type", "b"), eq("type", "a")]).unwrap();
        assert_eq!(both.atoms().len(), 2, "duplicates are dropped");
        assert_eq!(any_of([eq("type", "a"), None]), None);
        assert_eq!(any_of(std::iter::empty()), None);
        // Data atoms only combine with atoms on the same path.
        let x = data(&["x"], Test::Equals, "1");
        assert!(any_of([x.clone(), data(&["x"], Test::Prefix, "2")]).is_some());
        assert_eq!(any_of([x.clone(), data(&["y"], Test::Equals, "1")]), None);
        assert_eq!(any_of([x.clone(), eq("type", "a")]), None);
        let range = Range {
            lower: Some((1.0, true)),
            upper: None,
        };
        let number = Some(Guard::one(Atom {
            field: Field::Data(vec!["x".to_owned()]),
            check: Check::Number(range.clone()),
        }));
        assert!(any_of([x, number]).is_some(), "numbers combine on one path");
        let on_attribute = Some(Guard::one(Atom {
            field: Field::Attribute("n".into()),
            check: Check::Number(range),
        }));
        assert_eq!(any_of([eq("type", "a"), on_attribute]), None);
        let many = (0..=MAX_ATOMS).map(|i| eq("type", &i.to_string()));
        assert_eq!(any_of(many), None);
    }

    #[test]
    fn atoms_test_text() {
        let event = Event::new("1", "/shop/eu", "1.0", "t").with_extension("n", 42);
        let holds = |name: &str, test, value| {
            Atom::attribute(&name.into(), test, value).holds_for_attribute(&event)
        };
        assert!(holds("source", Test::Prefix, "/shop"));
        assert!(holds("source", Test::Suffix, "/eu"));
        assert!(!holds("source", Test::Equals, "/shop"));
        assert!(holds("n", Test::Equals, "42"));
        assert!(!holds("missing", Test::Prefix, ""));
    }
}
