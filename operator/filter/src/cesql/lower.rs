//! Compiling a filter's CESQL expression into simpler parts.
//!
//! A filter reads an expression as "`true` without any error". For `a AND b` that
//! holds exactly when it holds for `a` and for `b` (a false or failing `a` decides
//! without evaluating `b`), so the top-level `AND` chain splits into parts that
//! the filter checks one by one, cheapest first. Parts that are plain tests of one
//! attribute become [`Conjunct`]s evaluated without the tree-walking evaluator, with
//! exactly the evaluator's casts:
//!
//! * `attr = 'x'`, `attr LIKE 'x'` / `'x%'` / `'%x'`: the attribute cast to String
//!   (its canonical text) equals / starts with / ends with `x`; `'x' = attr` casts `'x'`
//!   to the attribute's type, so only for context attributes (always Strings);
//! * `attr OP n` and `INT(attr) OP n` for a comparison `OP` and an integer literal
//!   (and `n OP attr` for `<`, `<=`, `>`, `>=`): the attribute cast to Integer;
//! * `EXISTS attr`, `NOT EXISTS attr`.

use super::Expression;
use super::ast::{BinOp, Expr};
use super::functions::Function;
use crate::event::{AttributeValue, Name};
use crate::guard::Test;

/// One part of a filter expression's top-level `AND` chain.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Conjunct {
    /// The attribute's text passes the string test.
    Test(Name, Test, String),
    /// The attribute, cast to Integer, compares so with the value.
    Compare(Name, Comparison, i32),
    /// `EXISTS attr`.
    Exists(Name),
    /// `NOT EXISTS attr`.
    Absent(Name),
    /// Anything else (its `source` is the whole expression's).
    Expression(Expression),
}

/// An integer comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Comparison {
    Eq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Comparison {
    fn of(op: BinOp) -> Option<Self> {
        Some(match op {
            BinOp::Eq => Comparison::Eq,
            BinOp::NotEq => Comparison::NotEq,
            BinOp::Lt => Comparison::Lt,
            BinOp::Le => Comparison::Le,
            BinOp::Gt => Comparison::Gt,
            BinOp::Ge => Comparison::Ge,
            _ => return None,
        })
    }

    /// `n OP attr` as `attr OP' n`; `None` for `=` and `!=`, which cast `n` to the
    /// attribute's type rather than the attribute to Integer.
    fn flipped(self) -> Option<Self> {
        match self {
            Comparison::Lt => Some(Comparison::Gt),
            Comparison::Le => Some(Comparison::Ge),
            Comparison::Gt => Some(Comparison::Lt),
            Comparison::Ge => Some(Comparison::Le),
            Comparison::Eq | Comparison::NotEq => None,
        }
    }

    /// Whether the attribute, cast to Integer as CESQL casts (a String in base 10, a
    /// Boolean as 1 or 0), compares so with `value`. An absent attribute or a failed
    /// cast is an error, so no match.
    pub(crate) fn holds(self, attribute: Option<AttributeValue<'_>>, value: i32) -> bool {
        let n = match attribute {
            Some(AttributeValue::Integer(n)) => n,
            Some(AttributeValue::Boolean(b)) => i32::from(b),
            Some(AttributeValue::String(s)) => match s.parse::<i32>() {
                Ok(n) => n,
                Err(_) => return false,
            },
            None => return false,
        };
        match self {
            Comparison::Eq => n == value,
            Comparison::NotEq => n != value,
            Comparison::Lt => n < value,
            Comparison::Le => n <= value,
            Comparison::Gt => n > value,
            Comparison::Ge => n >= value,
        }
    }
}

/// The attribute of `attr` or `INT(attr)`.
fn as_integer_operand(expr: &Expr) -> Option<&Name> {
    match expr {
        Expr::Attr(name) => Some(name),
        Expr::Call {
            func: Function::Int,
            args,
        } => match args.as_slice() {
            [Expr::Attr(name)] => Some(name),
            _ => None,
        },
        _ => None,
    }
}

impl Conjunct {
    fn of(expr: Expr, source: &str) -> Self {
        match &expr {
            Expr::Binary { op, left, right } => {
                if let Some(simple) = Conjunct::binary(*op, left, right) {
                    return simple;
                }
            }
            // LIKE casts its operand to String.
            Expr::Like {
                expr: operand,
                pattern,
                negated: false,
            } => {
                if let (Expr::Attr(name), Some((test, text))) =
                    (operand.as_ref(), pattern.exact_shape())
                {
                    return Conjunct::Test(name.clone(), test, text);
                }
            }
            Expr::Exists(name) => return Conjunct::Exists(name.clone()),
            Expr::Not(inner) => {
                if let Expr::Exists(name) = inner.as_ref() {
                    return Conjunct::Absent(name.clone());
                }
            }
            _ => {}
        }
        Conjunct::Expression(Expression {
            source: source.to_owned(),
            root: expr,
        })
    }

    fn binary(op: BinOp, left: &Expr, right: &Expr) -> Option<Self> {
        let comparison = Comparison::of(op)?;
        match (left, right) {
            // `=` casts the left side to the right side's type: to String here.
            (Expr::Attr(name), Expr::Str(s)) if op == BinOp::Eq => {
                Some(Conjunct::Test(name.clone(), Test::Equals, s.clone()))
            }
            (Expr::Str(s), Expr::Attr(name)) if op == BinOp::Eq && name.is_context() => {
                Some(Conjunct::Test(name.clone(), Test::Equals, s.clone()))
            }
            (operand, Expr::Int(n)) => as_integer_operand(operand)
                .map(|name| Conjunct::Compare(name.clone(), comparison, *n)),
            (Expr::Int(n), operand) => {
                let name = as_integer_operand(operand)?;
                // `n = INT(attr)` compares Integers; `n = attr` would cast `n` instead.
                let comparison = match (comparison.flipped(), operand) {
                    (Some(flipped), _) => flipped,
                    (None, Expr::Call { .. }) => comparison,
                    (None, _) => return None,
                };
                Some(Conjunct::Compare(name.clone(), comparison, *n))
            }
            _ => None,
        }
    }
}

impl Expression {
    /// Splits the top-level `AND` chain into [`Conjunct`]s that all must match.
    pub(crate) fn into_conjuncts(self) -> Vec<Conjunct> {
        let mut out = Vec::new();
        let mut pending = vec![self.root];
        while let Some(expr) = pending.pop() {
            match expr {
                Expr::Binary {
                    op: BinOp::And,
                    left,
                    right,
                } => {
                    pending.push(*right);
                    pending.push(*left);
                }
                expr => out.push(Conjunct::of(expr, &self.source)),
            }
        }
        out
    }
}
