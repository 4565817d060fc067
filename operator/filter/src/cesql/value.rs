//! CESQL values, their zero values and the type casts of CESQL §3.7.

use std::borrow::Cow;
use std::fmt;

use super::Type;
use crate::event::AttributeValue;

/// A CESQL value. Strings borrow from the expression or the event when they can.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Boolean(bool),
    /// A 32-bit signed Integer.
    Integer(i32),
    String(Cow<'a, str>),
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Boolean(b) => write!(f, "{b}"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::String(s) => write!(f, "'{s}'"),
        }
    }
}

impl<'a> From<AttributeValue<'a>> for Value<'a> {
    fn from(value: AttributeValue<'a>) -> Self {
        match value {
            AttributeValue::String(s) => Value::String(Cow::Borrowed(s)),
            AttributeValue::Integer(i) => Value::Integer(i),
            AttributeValue::Boolean(b) => Value::Boolean(b),
        }
    }
}

/// Why a cast failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CastFailure(pub(crate) String);

impl<'a> Value<'a> {
    #[must_use]
    pub fn value_type(&self) -> Type {
        match self {
            Value::Boolean(_) => Type::Boolean,
            Value::Integer(_) => Type::Integer,
            Value::String(_) => Type::String,
        }
    }

    /// The zero value of a type (CESQL §3.1): `false`, `0`, `""`.
    #[must_use]
    pub fn zero(ty: Type) -> Value<'static> {
        match ty {
            Type::Boolean => Value::Boolean(false),
            Type::Integer => Value::Integer(0),
            Type::String => Value::String(Cow::Borrowed("")),
        }
    }

    /// Casts to `to`.
    ///
    /// Integer → Boolean is allowed only as an explicit cast (`BOOL(x)`): the CESQL TCK
    /// expects `NOT 10` to raise a cast error while `BOOL(10)` is `true`.
    pub(crate) fn cast(self, to: Type, explicit: bool) -> Result<Value<'a>, CastFailure> {
        match (self, to) {
            (v, t) if v.value_type() == t => Ok(v),
            (Value::Integer(i), Type::String) => Ok(Value::String(Cow::Owned(i.to_string()))),
            (Value::Integer(i), Type::Boolean) if explicit => Ok(Value::Boolean(i != 0)),
            (Value::Integer(i), _) => Err(CastFailure(format!(
                "cannot implicitly cast integer {i} to a boolean"
            ))),
            (Value::Boolean(b), Type::Integer) => Ok(Value::Integer(i32::from(b))),
            (Value::Boolean(b), _) => Ok(Value::String(Cow::Borrowed(if b {
                "true"
            } else {
                "false"
            }))),
            (Value::String(s), Type::Integer) => parse_int(&s).map(Value::Integer),
            (Value::String(s), _) => parse_bool(&s).map(Value::Boolean),
        }
    }

    /// Casts to Boolean, reporting failure as the zero value.
    pub(crate) fn into_bool(self) -> Result<bool, CastFailure> {
        match self.cast(Type::Boolean, false)? {
            Value::Boolean(b) => Ok(b),
            _ => Ok(false),
        }
    }

    /// Casts to Integer.
    pub(crate) fn into_int(self) -> Result<i32, CastFailure> {
        match self.cast(Type::Integer, false)? {
            Value::Integer(i) => Ok(i),
            _ => Ok(0),
        }
    }

    /// Casts to String (never fails).
    pub(crate) fn into_string(self) -> Cow<'a, str> {
        match self {
            Value::String(s) => s,
            Value::Integer(i) => Cow::Owned(i.to_string()),
            Value::Boolean(true) => Cow::Borrowed("true"),
            Value::Boolean(false) => Cow::Borrowed("false"),
        }
    }
}

/// String → Integer: base 10, optional sign, 32-bit range.
pub(crate) fn parse_int(s: &str) -> Result<i32, CastFailure> {
    s.parse::<i32>()
        .map_err(|_| CastFailure(format!("'{s}' is not a 32-bit integer")))
}

/// String → Boolean: `true` or `false`, in any case.
pub(crate) fn parse_bool(s: &str) -> Result<bool, CastFailure> {
    if s.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if s.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(CastFailure(format!("'{s}' is not a boolean")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value<'_> {
        Value::String(Cow::Borrowed(v))
    }

    #[test]
    fn cast_table() {
        assert_eq!(Value::Integer(-1).cast(Type::String, false), Ok(s("-1")));
        assert_eq!(
            Value::Integer(5).cast(Type::Boolean, true),
            Ok(Value::Boolean(true))
        );
        assert_eq!(
            Value::Integer(0).cast(Type::Boolean, true),
            Ok(Value::Boolean(false))
        );
        assert!(Value::Integer(5).cast(Type::Boolean, false).is_err());
        assert_eq!(s("+7").cast(Type::Integer, false), Ok(Value::Integer(7)));
        assert_eq!(s("-7").cast(Type::Integer, false), Ok(Value::Integer(-7)));
        assert!(s("7 ").cast(Type::Integer, false).is_err());
        assert!(s("2147483648").cast(Type::Integer, false).is_err());
        assert_eq!(
            s("TrUe").cast(Type::Boolean, false),
            Ok(Value::Boolean(true))
        );
        assert!(s("yes").cast(Type::Boolean, false).is_err());
        assert_eq!(
            Value::Boolean(true).cast(Type::Integer, false),
            Ok(Value::Integer(1))
        );
        assert_eq!(
            Value::Boolean(false).cast(Type::String, false),
            Ok(s("false"))
        );
    }

    #[test]
    fn zero_values() {
        assert_eq!(Value::zero(Type::Boolean), Value::Boolean(false));
        assert_eq!(Value::zero(Type::Integer), Value::Integer(0));
        assert_eq!(Value::zero(Type::String), s(""));
    }
}
