//! CESQL built-in functions (§3.5) and the casting functions the TCK uses.
//!
//! Functions are resolved by upper-case name and arity when the expression is parsed.
//! The evaluator casts arguments to the parameter types before calling; a function that
//! fails still returns a value of its return type (§3.5.3) together with its error.
//!
//! Besides §3.5 this engine provides the casting functions `INT`, `BOOL` and `STRING`
//! (every CESQL TCK relies on them) and, as engine-defined functions, `IS_BOOL` and
//! `IS_INT` (whether a value can be cast). There is no `IS_STRING`.

use std::borrow::Cow;

use super::value::{CastFailure, Value, parse_bool, parse_int};
use super::{ErrorKind, Type};

/// A built-in function, with its arity resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Function {
    Abs,
    Length,
    Concat,
    ConcatWs,
    Lower,
    Upper,
    Trim,
    Left,
    Right,
    /// `SUBSTRING(x, pos)`.
    Substring,
    /// `SUBSTRING(x, pos, len)`.
    SubstringLen,
    Int,
    Bool,
    String,
    IsBool,
    IsInt,
}

/// A function's own failure: the value it still returns, and the error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Failure<'a> {
    pub(crate) value: Value<'a>,
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
}

impl Function {
    /// The function called `name` (upper case) with `arity` arguments, if any.
    pub(crate) fn resolve(name: &str, arity: usize) -> Option<Function> {
        let func = match (name, arity) {
            ("ABS", 1) => Function::Abs,
            ("LENGTH", 1) => Function::Length,
            ("CONCAT", _) => Function::Concat,
            ("CONCAT_WS", n) if n >= 1 => Function::ConcatWs,
            ("LOWER", 1) => Function::Lower,
            ("UPPER", 1) => Function::Upper,
            ("TRIM", 1) => Function::Trim,
            ("LEFT", 2) => Function::Left,
            ("RIGHT", 2) => Function::Right,
            ("SUBSTRING", 2) => Function::Substring,
            ("SUBSTRING", 3) => Function::SubstringLen,
            ("INT", 1) => Function::Int,
            ("BOOL", 1) => Function::Bool,
            ("STRING", 1) => Function::String,
            ("IS_BOOL", 1) => Function::IsBool,
            ("IS_INT", 1) => Function::IsInt,
            _ => return None,
        };
        Some(func)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Function::Abs => "ABS",
            Function::Length => "LENGTH",
            Function::Concat => "CONCAT",
            Function::ConcatWs => "CONCAT_WS",
            Function::Lower => "LOWER",
            Function::Upper => "UPPER",
            Function::Trim => "TRIM",
            Function::Left => "LEFT",
            Function::Right => "RIGHT",
            Function::Substring | Function::SubstringLen => "SUBSTRING",
            Function::Int => "INT",
            Function::Bool => "BOOL",
            Function::String => "STRING",
            Function::IsBool => "IS_BOOL",
            Function::IsInt => "IS_INT",
        }
    }

    pub(crate) fn return_type(self) -> Type {
        match self {
            Function::Abs | Function::Length | Function::Int => Type::Integer,
            Function::Bool | Function::IsBool | Function::IsInt => Type::Boolean,
            _ => Type::String,
        }
    }

    /// The type argument `index` is cast to before the call; `None` takes any type.
    pub(crate) fn param_type(self, index: usize) -> Option<Type> {
        match self {
            Function::Abs => Some(Type::Integer),
            Function::Length
            | Function::Concat
            | Function::ConcatWs
            | Function::Lower
            | Function::Upper
            | Function::Trim => Some(Type::String),
            Function::Left | Function::Right | Function::Substring | Function::SubstringLen => {
                Some(if index == 0 {
                    Type::String
                } else {
                    Type::Integer
                })
            }
            Function::Int
            | Function::Bool
            | Function::String
            | Function::IsBool
            | Function::IsInt => None,
        }
    }

    /// Calls the function on arguments already cast to [`Function::param_type`].
    pub(crate) fn call<'v>(
        self,
        args: impl IntoIterator<Item = Value<'v>>,
    ) -> Result<Value<'v>, Failure<'v>> {
        let mut args = args.into_iter();
        match self {
            Function::Abs => {
                let x = int(&take(&mut args));
                x.checked_abs().map(Value::Integer).ok_or_else(|| Failure {
                    value: Value::Integer(i32::MAX),
                    kind: ErrorKind::Math,
                    message: format!("ABS({x}) overflows a 32-bit integer"),
                })
            }
            Function::Length => {
                let s = take(&mut args).into_string();
                Ok(Value::Integer(
                    i32::try_from(s.chars().count()).unwrap_or(i32::MAX),
                ))
            }
            Function::Concat => Ok(concat(args)),
            Function::ConcatWs => {
                let delimiter = take(&mut args).into_string();
                let mut out = String::new();
                for (i, v) in args.enumerate() {
                    if i > 0 {
                        out.push_str(&delimiter);
                    }
                    out.push_str(&v.into_string());
                }
                Ok(Value::String(Cow::Owned(out)))
            }
            Function::Lower => Ok(Value::String(Cow::Owned(
                take(&mut args).into_string().to_lowercase(),
            ))),
            Function::Upper => Ok(Value::String(Cow::Owned(
                take(&mut args).into_string().to_uppercase(),
            ))),
            Function::Trim => Ok(Value::String(match take(&mut args).into_string() {
                Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
                Cow::Owned(s) => Cow::Owned(s.trim().to_owned()),
            })),
            Function::Left | Function::Right => {
                let s = take(&mut args).into_string();
                let n = int(&take(&mut args));
                self.left_right(s, n)
            }
            Function::Substring | Function::SubstringLen => {
                let s = take(&mut args).into_string();
                let pos = int(&take(&mut args));
                let len = (self == Function::SubstringLen).then(|| int(&take(&mut args)));
                substring(s, pos, len)
            }
            Function::Int | Function::Bool => self.explicit_cast(take(&mut args)),
            Function::String => Ok(Value::String(take(&mut args).into_string())),
            Function::IsBool => Ok(Value::Boolean(match take(&mut args) {
                Value::Boolean(_) => true,
                Value::String(s) => parse_bool(&s).is_ok(),
                Value::Integer(_) => false,
            })),
            Function::IsInt => Ok(Value::Boolean(match take(&mut args) {
                Value::Integer(_) => true,
                Value::String(s) => parse_int(&s).is_ok(),
                Value::Boolean(_) => false,
            })),
        }
    }

    /// `LEFT(s, n)` / `RIGHT(s, n)`: the first / last `n` characters.
    fn left_right(self, s: Cow<'_, str>, n: i32) -> Result<Value<'_>, Failure<'_>> {
        let Ok(n) = usize::try_from(n) else {
            return Err(Failure {
                message: format!("{}: the length {n} is negative", self.name()),
                value: Value::String(s),
                kind: ErrorKind::FunctionEvaluation,
            });
        };
        let len = s.chars().count();
        if n >= len {
            return Ok(Value::String(s));
        }
        let range = if self == Function::Left {
            0..n
        } else {
            len - n..len
        };
        Ok(Value::String(char_slice(s, range.start, range.end)))
    }

    /// `INT(x)` and `BOOL(x)`: explicit casts, which may turn an integer into a boolean.
    fn explicit_cast(self, v: Value<'_>) -> Result<Value<'_>, Failure<'_>> {
        let ty = self.return_type();
        v.cast(ty, true).map_err(|CastFailure(message)| Failure {
            value: Value::zero(ty),
            kind: ErrorKind::Cast,
            message,
        })
    }
}

/// `CONCAT(x...)`; a single argument is returned as is.
fn concat<'a>(mut args: impl Iterator<Item = Value<'a>>) -> Value<'a> {
    let Some(first) = args.next() else {
        return Value::String(Cow::Borrowed(""));
    };
    let mut first = first.into_string();
    for v in args {
        first.to_mut().push_str(&v.into_string());
    }
    Value::String(first)
}

fn take<'a>(args: &mut impl Iterator<Item = Value<'a>>) -> Value<'a> {
    args.next().unwrap_or(Value::Integer(0))
}

fn int(v: &Value<'_>) -> i32 {
    if let Value::Integer(i) = v { *i } else { 0 }
}

/// Characters `start..end` of `s` (character indices, both within bounds).
fn char_slice(s: Cow<'_, str>, start: usize, end: usize) -> Cow<'_, str> {
    let byte = |s: &str, chars: usize| s.char_indices().nth(chars).map_or(s.len(), |(i, _)| i);
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(&b[byte(b, start)..byte(b, end)]),
        Cow::Owned(o) => Cow::Owned(o[byte(&o, start)..byte(&o, end)].to_owned()),
    }
}

/// `SUBSTRING(x, pos[, len])`: 1-based `pos`, negative counts from the end, 0 is empty.
fn substring(s: Cow<'_, str>, pos: i32, len: Option<i32>) -> Result<Value<'_>, Failure<'_>> {
    let count = i64::try_from(s.chars().count()).unwrap_or(i64::MAX);
    let pos64 = i64::from(pos);
    let fail = |message: String| Failure {
        value: Value::String(Cow::Borrowed("")),
        kind: ErrorKind::FunctionEvaluation,
        message,
    };
    if pos64 > count || pos64 < -count {
        return Err(fail(format!(
            "SUBSTRING: position {pos} is outside a string of {count} characters"
        )));
    }
    if let Some(len) = len.filter(|l| *l < 0) {
        return Err(fail(format!("SUBSTRING: the length {len} is negative")));
    }
    if pos == 0 {
        return Ok(Value::String(Cow::Borrowed("")));
    }
    let start = if pos64 > 0 { pos64 - 1 } else { count + pos64 };
    let end = len.map_or(count, |l| (start + i64::from(l)).min(count));
    let to_usize = |v: i64| usize::try_from(v).unwrap_or(0);
    Ok(Value::String(char_slice(s, to_usize(start), to_usize(end))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value<'_> {
        Value::String(Cow::Borrowed(v))
    }

    fn call<'a>(name: &str, args: Vec<Value<'a>>) -> Result<Value<'a>, Failure<'a>> {
        Function::resolve(name, args.len())
            .expect("function")
            .call(args)
    }

    #[test]
    fn resolution_by_name_and_arity() {
        assert_eq!(Function::resolve("CONCAT", 0), Some(Function::Concat));
        assert_eq!(Function::resolve("CONCAT_WS", 0), None);
        assert_eq!(
            Function::resolve("SUBSTRING", 3),
            Some(Function::SubstringLen)
        );
        assert_eq!(Function::resolve("SUBSTRING", 4), None);
        assert_eq!(Function::resolve("IS_STRING", 1), None);
        assert_eq!(Function::resolve("LEFT", 1), None);
    }

    #[test]
    fn string_functions_work_on_characters() {
        assert_eq!(call("LENGTH", vec![s("héllo")]), Ok(Value::Integer(5)));
        assert_eq!(
            call("LEFT", vec![s("héllo"), Value::Integer(2)]),
            Ok(s("hé"))
        );
        assert_eq!(
            call("RIGHT", vec![s("héllo"), Value::Integer(4)]),
            Ok(s("éllo"))
        );
        assert_eq!(
            call(
                "SUBSTRING",
                vec![s("héllo"), Value::Integer(2), Value::Integer(2)]
            ),
            Ok(s("él"))
        );
        assert_eq!(call("UPPER", vec![s("straße")]), Ok(s("STRASSE")));
        assert_eq!(call("TRIM", vec![s("\u{2003} a \n")]), Ok(s("a")));
    }

    #[test]
    fn concat_forms() {
        assert_eq!(call("CONCAT", vec![]), Ok(s("")));
        assert_eq!(call("CONCAT", vec![s("a"), s("b")]), Ok(s("ab")));
        assert_eq!(
            call("CONCAT_WS", vec![s("-"), s("a"), s("b"), s("c")]),
            Ok(s("a-b-c"))
        );
    }

    #[test]
    fn failures_keep_a_value() {
        let err = call("ABS", vec![Value::Integer(i32::MIN)]).unwrap_err();
        assert_eq!(
            (err.value, err.kind),
            (Value::Integer(i32::MAX), ErrorKind::Math)
        );
        let err = call("LEFT", vec![s("abc"), Value::Integer(-1)]).unwrap_err();
        assert_eq!(
            (err.value, err.kind),
            (s("abc"), ErrorKind::FunctionEvaluation)
        );
        let err = call(
            "SUBSTRING",
            vec![s("abc"), Value::Integer(1), Value::Integer(-1)],
        )
        .unwrap_err();
        assert_eq!(err.value, s(""));
        let err = call("INT", vec![s("x")]).unwrap_err();
        assert_eq!((err.value, err.kind), (Value::Integer(0), ErrorKind::Cast));
    }

    #[test]
    fn type_predicates() {
        assert_eq!(call("IS_BOOL", vec![s("FALSE")]), Ok(Value::Boolean(true)));
        assert_eq!(
            call("IS_BOOL", vec![Value::Integer(1)]),
            Ok(Value::Boolean(false))
        );
        assert_eq!(call("IS_INT", vec![s("-12")]), Ok(Value::Boolean(true)));
        assert_eq!(
            call("IS_INT", vec![Value::Boolean(true)]),
            Ok(Value::Boolean(false))
        );
        assert_eq!(call("IS_INT", vec![s("1.5")]), Ok(Value::Boolean(false)));
    }
}
