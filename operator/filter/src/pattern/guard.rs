//! Guards of content patterns (see [`crate::guard`]): a field whose matchers all test
//! a string against a literal (exact strings, `prefix`, `suffix`, `wildcard` with a
//! literal start or end) gives one atom per matcher, on the attribute or on the path
//! in `data`; in `data`, exact numbers and `numeric` ranges count too (attributes
//! are strings read as numbers, which no literal captures). An exact value that is an
//! IP address has no atom: it equals other spellings of the address. `exists` and
//! `anything-but` have none either. The most selective field of an alternative wins;
//! the alternatives (`$or`) unite.

use super::matcher::{Exact, Leaf, Matcher, Range};
use super::number::Num;
use super::walk::Alternative;
use crate::guard::{self, Atom, Check, Field as Place, Guard, Test};

/// The atoms of a leaf at `place`, if every matcher has one.
fn leaf(place: &Place, leaf: &Leaf) -> Option<Guard> {
    if leaf.if_present || leaf.if_absent {
        return None;
    }
    let in_data = matches!(place, Place::Data(_));
    let atoms = leaf
        .matchers
        .iter()
        .map(|m| {
            let check = match m {
                Matcher::Exact(Exact::Str(s)) => Check::Text(Test::Equals, s.clone()),
                Matcher::Prefix(value) => Check::Text(Test::Prefix, value.clone()),
                Matcher::Suffix(value) => Check::Text(Test::Suffix, value.clone()),
                Matcher::Wildcard(glob) => {
                    let (test, value) = glob.literal_shape()?;
                    Check::Text(test, value)
                }
                Matcher::Exact(Exact::Num(n)) if in_data => {
                    let n = as_double(*n);
                    Check::Number(Range {
                        lower: Some((n, true)),
                        upper: Some((n, true)),
                    })
                }
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

/// The double the index reads for an equal JSON number (the nearest one for an integer
/// no double holds).
// The rounding is the same one `serde_json` applies when the index reads the event.
#[allow(clippy::cast_precision_loss)]
fn as_double(n: Num) -> f64 {
    match n {
        Num::Double(d) => d,
        Num::Wide(i) => i as f64,
    }
}

fn alternative(alt: &Alternative) -> Option<Guard> {
    let attributes = alt
        .attributes
        .iter()
        .map(|(name, l)| leaf(&Place::Attribute(name.clone()), l));
    let data = alt.data.iter().map(|field| {
        if field.path.segments.is_empty() {
            // `data` itself: not indexed.
            None
        } else {
            leaf(&Place::Data(field.path.segments.clone()), &field.leaf)
        }
    });
    guard::all_of(attributes.chain(data))
}

/// The guard of a whole pattern.
pub(crate) fn pattern(alternatives: &[Alternative]) -> Option<Guard> {
    guard::any_of(alternatives.iter().map(alternative))
}
