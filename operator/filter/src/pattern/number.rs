//! Numbers as EventBridge compares them.
//!
//! EventBridge (its open-source engine, Event Ruler) compares a JSON number as a double
//! only when the double's shortest decimal form is exactly the number; any other number
//! (an account ID such as `123456789012345678`) is compared by its digits. Doubles are
//! ordered by their IEEE-754 total order, so `-0.0` sorts below `0`.

use std::cmp::Ordering;

use serde_json::Number;

/// A JSON number ready for comparison.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Num {
    /// A number that a double holds exactly.
    Double(f64),
    /// An integer that no double holds exactly: compared by value, never by range.
    Wide(i128),
}

/// Integers up to this magnitude are always exact doubles.
const EXACT_INTEGERS: i64 = 1 << 53;

impl Num {
    /// The comparable form of a JSON number; `None` for a non-finite double.
    // Below 2^53 in magnitude the casts are exact.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn of(n: &Number) -> Option<Num> {
        if let Some(u) = n.as_u64() {
            if u <= EXACT_INTEGERS.unsigned_abs() {
                return Some(Num::Double(u as f64));
            }
            return Some(Num::integer(i128::from(u)));
        }
        if let Some(i) = n.as_i64() {
            if i >= -EXACT_INTEGERS {
                return Some(Num::Double(i as f64));
            }
            return Some(Num::integer(i128::from(i)));
        }
        n.as_f64().filter(|f| f.is_finite()).map(Num::Double)
    }

    /// A double read from text (a context attribute).
    pub(crate) fn from_text(text: &str) -> Option<Num> {
        text.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Num::Double)
    }

    /// An integer beyond 2^53 in magnitude.
    // The cast is the point: a double holds the integer exactly or it does not.
    #[allow(clippy::cast_precision_loss)]
    fn integer(i: i128) -> Num {
        let double = i as f64;
        // `Display` writes a double's shortest round-trip digits without an exponent.
        if double.to_string().parse::<i128>() == Ok(i) {
            Num::Double(double)
        } else {
            Num::Wide(i)
        }
    }

    /// The double, when the number is one (ranges only hold doubles).
    pub(crate) fn double(self) -> Option<f64> {
        match self {
            Num::Double(d) => Some(d),
            Num::Wide(_) => None,
        }
    }

    /// Equality as EventBridge decides it: doubles by total order, wide integers by value.
    pub(crate) fn same(self, other: Num) -> bool {
        match (self, other) {
            (Num::Double(a), Num::Double(b)) => a.total_cmp(&b) == Ordering::Equal,
            (Num::Wide(a), Num::Wide(b)) => a == b,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str) -> Num {
        let n: Number = serde_json::from_str(text).unwrap();
        Num::of(&n).unwrap()
    }

    #[test]
    fn doubles_compare_by_value() {
        assert!(num("5").same(num("5.0")));
        assert!(num("301.8").same(num("3.018e2")));
        assert!(!num("5").same(num("5.000001")));
        assert!(!num("0").same(num("-0.0")), "total order tells -0 from 0");
    }

    #[test]
    fn integers_beyond_doubles_compare_by_digits() {
        assert_eq!(num("9007199254740993"), Num::Wide(9_007_199_254_740_993));
        assert!(!num("9007199254740993").same(num("9007199254740992")));
        assert!(num("9007199254740993").same(num("9007199254740993")));
        // A large integer whose shortest double form is exact stays a double.
        assert_eq!(num("100000000000000000"), Num::Double(1e17));
        assert!(num("18446744073709551615").double().is_none());
    }

    #[test]
    fn attribute_text() {
        assert_eq!(Num::from_text("42.5"), Some(Num::Double(42.5)));
        assert_eq!(Num::from_text("NaN"), None);
        assert_eq!(Num::from_text("inf"), None);
        assert_eq!(Num::from_text("x"), None);
    }
}
