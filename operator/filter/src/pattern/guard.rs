//! Guards of content patterns (see [`crate::guard`]): a field whose matchers all test
//! a string against a literal (exact strings, `prefix`, `suffix`, `wildcard` with a
//! literal start or end) gives one atom per matcher, on the attribute or on the path
//! in `data`; in `data`, exact numbers and `numeric` ranges count too (attributes
//! are strings read as numbers, which no literal captures). The most selective field
//! wins; `$or` unites its alternatives.

use super::matcher::{DataPattern, Exact, Field, Leaf, Matcher, ObjectPattern, Range, TopPattern};
use crate::guard::{self, Atom, Check, Field as Place, Guard, Test};

/// The atoms of a leaf at `place`, if every matcher has one.
fn leaf(place: &Place, leaf: &Leaf) -> Option<Guard> {
    let atoms = leaf
        .matchers
        .iter()
        .map(|m| {
            let in_data = matches!(place, Place::Data(_));
            let check = match m {
                Matcher::Exact(Exact::Str(s)) => Check::Text(Test::Equals, s.clone()),
                Matcher::Prefix {
                    value,
                    ignore_case: false,
                } => Check::Text(Test::Prefix, value.clone()),
                Matcher::Suffix {
                    value,
                    ignore_case: false,
                } => Check::Text(Test::Suffix, value.clone()),
                Matcher::Wildcard(glob) => {
                    let (test, value) = glob.literal_shape()?;
                    Check::Text(test, value)
                }
                Matcher::Exact(Exact::Num(n)) if in_data => Check::Number(Range {
                    lower: Some((*n, true)),
                    upper: Some((*n, true)),
                }),
                Matcher::Numeric(range) if in_data => Check::Number(range.clone()),
                _ => return None,
            };
            Some(Atom {
                field: place.clone(),
                check,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Guard::of(atoms)
}

fn object(pattern: &ObjectPattern, path: &[String]) -> Option<Guard> {
    let fields = pattern.fields.iter().map(|(name, field)| {
        let mut here = path.to_vec();
        here.push(name.clone());
        match field {
            Field::Leaf(l) => leaf(&Place::Data(here), l),
            Field::Object(inner) => object(inner, &here),
        }
    });
    let alternatives = if pattern.any_of.is_empty() {
        None
    } else {
        guard::any_of(pattern.any_of.iter().map(|alt| object(alt, path)))
    };
    guard::all_of(fields.chain([alternatives]))
}

/// The guard of a whole pattern.
pub(crate) fn top(pattern: &TopPattern) -> Option<Guard> {
    let attributes = pattern
        .attributes
        .iter()
        .map(|(name, l)| leaf(&Place::Attribute(name.clone()), l));
    let data = match &pattern.data {
        Some(DataPattern::Object(p)) => object(p, &[]),
        Some(DataPattern::Leaf(_)) | None => None,
    };
    let alternatives = if pattern.any_of.is_empty() {
        None
    } else {
        guard::any_of(pattern.any_of.iter().map(top))
    };
    guard::all_of(attributes.chain([data, alternatives]))
}
