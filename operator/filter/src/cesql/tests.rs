//! CESQL semantics beyond the TCK: error propagation, overflow, typed extensions and
//! the filter reading of an expression.

use std::borrow::Cow;

use super::*;

fn event() -> Event<'static> {
    Event::new("id-1", "/src", "1.0", "com.example.a")
        .with_subject("sub")
        .with_extension("count", "12")
        .with_extension("typed", 7)
        .with_extension("flag", true)
}

fn eval(src: &str) -> (Value<'static>, Vec<ErrorKind>) {
    let expr = Expression::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    let ev = event();
    let out = expr.evaluate(&ev);
    let kinds = out.errors.iter().map(|e| e.kind).collect();
    let value = match out.value {
        Value::String(s) => Value::String(Cow::Owned(s.into_owned())),
        Value::Integer(i) => Value::Integer(i),
        Value::Boolean(b) => Value::Boolean(b),
    };
    (value, kinds)
}

fn string(s: &str) -> Value<'static> {
    Value::String(Cow::Owned(s.to_owned()))
}

#[test]
fn attributes_and_typed_extensions() {
    assert_eq!(eval("type"), (string("com.example.a"), vec![]));
    assert_eq!(eval("typed"), (Value::Integer(7), vec![]));
    assert_eq!(eval("typed + 1"), (Value::Integer(8), vec![]));
    assert_eq!(eval("flag AND TRUE"), (Value::Boolean(true), vec![]));
    assert_eq!(eval("count > 10"), (Value::Boolean(true), vec![]));
    assert_eq!(eval("count = 12"), (Value::Boolean(true), vec![]));
    assert_eq!(
        eval("EXISTS typed AND NOT EXISTS nope"),
        (Value::Boolean(true), vec![])
    );
}

#[test]
fn missing_attribute_yields_zero_of_the_enclosing_type() {
    assert_eq!(
        eval("nope"),
        (Value::Boolean(false), vec![ErrorKind::MissingAttribute])
    );
    assert_eq!(
        eval("LENGTH(nope)"),
        (Value::Integer(0), vec![ErrorKind::MissingAttribute])
    );
    assert_eq!(
        eval("CONCAT('a', nope)"),
        (string(""), vec![ErrorKind::MissingAttribute])
    );
    assert_eq!(
        eval("nope IN ('a')"),
        (Value::Boolean(false), vec![ErrorKind::MissingAttribute])
    );
    // Only the first failing operand is evaluated.
    assert_eq!(
        eval("nope = other"),
        (Value::Boolean(false), vec![ErrorKind::MissingAttribute])
    );
}

#[test]
fn short_circuit_skips_errors() {
    assert_eq!(eval("FALSE AND nope"), (Value::Boolean(false), vec![]));
    assert_eq!(eval("TRUE OR 1 / 0 = 1"), (Value::Boolean(true), vec![]));
    assert_eq!(
        eval("TRUE AND nope"),
        (Value::Boolean(false), vec![ErrorKind::MissingAttribute])
    );
    // XOR does not short-circuit.
    assert_eq!(
        eval("TRUE XOR nope"),
        (Value::Boolean(false), vec![ErrorKind::MissingAttribute])
    );
}

#[test]
fn integer_overflow_is_a_math_error() {
    assert_eq!(
        eval("2147483647 + 1"),
        (Value::Integer(0), vec![ErrorKind::Math])
    );
    assert_eq!(
        eval("-2147483648 - 1"),
        (Value::Integer(0), vec![ErrorKind::Math])
    );
    assert_eq!(
        eval("65536 * 65536"),
        (Value::Integer(0), vec![ErrorKind::Math])
    );
    assert_eq!(
        eval("-2147483648 / -1"),
        (Value::Integer(0), vec![ErrorKind::Math])
    );
    assert_eq!(
        eval("-(-2147483648)"),
        (Value::Integer(0), vec![ErrorKind::Math])
    );
    assert_eq!(eval("-7 / 2"), (Value::Integer(-3), vec![]));
    assert_eq!(eval("-7 % 2"), (Value::Integer(-1), vec![]));
    assert_eq!(eval("7 % -2"), (Value::Integer(1), vec![]));
}

#[test]
fn cast_failures_in_operators() {
    assert_eq!(
        eval("'abc' + 1"),
        (Value::Integer(0), vec![ErrorKind::Cast])
    );
    assert_eq!(
        eval("'abc' = 0"),
        (Value::Boolean(false), vec![ErrorKind::Cast])
    );
    assert_eq!(
        eval("'abc' < 1"),
        (Value::Boolean(false), vec![ErrorKind::Cast])
    );
    assert_eq!(
        eval("1 AND TRUE"),
        (Value::Boolean(false), vec![ErrorKind::Cast])
    );
    assert_eq!(
        eval("LEFT('abc', 'x')"),
        (string(""), vec![ErrorKind::Cast])
    );
    // IN reports the element that cannot be cast but still finds a later match.
    assert_eq!(
        eval("1 IN ('x', 1)"),
        (Value::Boolean(true), vec![ErrorKind::Cast])
    );
}

#[test]
fn equality_casts_to_the_right_operand_type() {
    assert_eq!(eval("TRUE = 'true'"), (Value::Boolean(true), vec![]));
    assert_eq!(eval("'TRUE' = TRUE"), (Value::Boolean(true), vec![]));
    assert_eq!(eval("1 = '01'"), (Value::Boolean(false), vec![]));
    assert_eq!(eval("'01' = 1"), (Value::Boolean(true), vec![]));
    assert_eq!(eval("'a' <> 'b'"), (Value::Boolean(true), vec![]));
}

#[test]
fn precedence_of_like_in_and_unary() {
    // LIKE binds tighter than AND.
    assert_eq!(
        eval("type LIKE 'com.%' AND source LIKE '/s_c'"),
        (Value::Boolean(true), vec![])
    );
    // Unary minus binds tighter than `*`; IN tighter than `=`.
    assert_eq!(eval("-2 * 3"), (Value::Integer(-6), vec![]));
    assert_eq!(eval("1 IN (1) = TRUE"), (Value::Boolean(true), vec![]));
    // Left-to-right logic: (TRUE OR FALSE) AND FALSE.
    assert_eq!(
        eval("TRUE OR FALSE AND FALSE"),
        (Value::Boolean(false), vec![])
    );
}

#[test]
fn filter_reading_requires_true_without_errors() {
    let ev = event();
    let matches = |src: &str| Expression::parse(src).unwrap().matches(&ev);
    assert!(matches("type = 'com.example.a'"));
    assert!(!matches("type = 'com.example.b'"));
    assert!(!matches("'yes'"), "a string is not a match");
    assert!(!matches("1"), "an integer is not a match");
    assert!(!matches("1 IN ('x', 1)"), "an error voids a true result");
    assert!(!matches("NOT 10"), "an error voids a true result");
    assert!(matches("flag"));
}

#[test]
fn static_information() {
    let parse = |s: &str| Expression::parse(s).unwrap();
    assert_eq!(parse("1 + 2").result_type(), Some(Type::Integer));
    assert_eq!(parse("LOWER(type)").result_type(), Some(Type::String));
    assert_eq!(parse("a = 1").result_type(), Some(Type::Boolean));
    assert_eq!(parse("myext").result_type(), None);
    assert_eq!(
        parse("NOPE(1) OR ABS(1, 2) = 1 OR ABS(1) = 1").missing_functions(),
        vec!["NOPE/1".to_owned(), "ABS/2".to_owned()]
    );
}

#[test]
fn and_chains_split_into_simple_tests() {
    use super::Conjunct;
    use crate::event::Name;
    use crate::guard::Test;
    let parts = |s: &str| Expression::parse(s).unwrap().into_conjuncts();
    let test = |name: &str, t: Test, v: &str| Conjunct::Test(name.into(), t, v.to_owned());
    assert_eq!(parts("type = 'x'"), vec![test("type", Test::Equals, "x")]);
    assert_eq!(parts("'x' = TYPE"), vec![test("type", Test::Equals, "x")]);
    assert_eq!(
        parts(
            "source LIKE 'a%' AND EXISTS b AND NOT EXISTS c AND subject LIKE '%.png' AND t LIKE ''"
        ),
        vec![
            test("source", Test::Prefix, "a"),
            Conjunct::Exists(Name::from("b")),
            Conjunct::Absent(Name::from("c")),
            test("subject", Test::Suffix, ".png"),
            test("t", Test::Equals, ""),
        ]
    );
    // Typed extensions: `'5' = n` casts '5' to n's type, so it stays an expression.
    for kept in [
        "'x' = tenant",
        "type = 'x' OR TRUE",
        "type != 'x'",
        "type LIKE 'a_%'",
        "type NOT LIKE 'a%'",
        "type LIKE '%a%'",
        "5 = n",
        "n = '5' + 1",
        "LENGTH(n) > 1",
        "NOT (a = 'x')",
    ] {
        assert!(
            matches!(parts(kept)[..], [Conjunct::Expression(_)]),
            "{kept}: {:?}",
            parts(kept)
        );
    }
    let compare = |name: &str, op, n| Conjunct::Compare(name.into(), op, n);
    assert_eq!(
        parts("n = 5 AND n != -1 AND INT(n) >= 2 AND 3 < n AND 4 = INT(n)"),
        vec![
            compare("n", super::Comparison::Eq, 5),
            compare("n", super::Comparison::NotEq, -1),
            compare("n", super::Comparison::Ge, 2),
            compare("n", super::Comparison::Gt, 3),
            compare("n", super::Comparison::Eq, 4),
        ]
    );
    let mixed = parts("a = 'x' AND (b = 'y' OR c = 'z') AND INT(d) > 1");
    assert!(matches!(
        mixed[..],
        [
            Conjunct::Test(..),
            Conjunct::Expression(_),
            Conjunct::Compare(..)
        ]
    ));
}

#[test]
fn errors_have_readable_messages() {
    let expr = Expression::parse("1 / 0").unwrap();
    let ev = event();
    let out = expr.evaluate(&ev);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(
        out.errors[0].to_string(),
        "math error: division by zero in 1 / 0"
    );
    let err = Expression::parse("a LIKE").unwrap_err();
    assert!(err.to_string().starts_with("at offset 6:"), "{err}");
    assert_eq!(
        ErrorKind::FunctionEvaluation.tck_name(),
        "functionEvaluation"
    );
}
