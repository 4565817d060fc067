//! CESQL evaluator.
//!
//! Every node returns a value of its type and whether it failed. Errors follow CESQL
//! §3.2–§3.3 as the TCK pins them down:
//!
//! * a node whose operand failed (a missing attribute, a math error below it, ...)
//!   does not compute: it returns the zero value of its own type and passes the failure
//!   up, so `1 / missing` is `0` with a missing-attribute error and no math error;
//! * a node that fails itself returns the value the spec defines for that failure
//!   (`ABS(-2147483648)` is `2147483647`, `LEFT('abc', -2)` is `'abc'`, `x / 0` is `0`);
//! * an operand that cannot be cast makes a binary operator return its zero value; the
//!   operand of `NOT` that cannot be cast reads as `false` (so `NOT 10` is `true` with a
//!   cast error, as the TCK expects).
//!
//! `AND` and `OR` short-circuit. Errors are collected with messages only when the
//! caller asks for them; a filter only counts them, so matching does not allocate for
//! errors.

use std::borrow::Cow;

use super::ast::{BinOp, Expr};
use super::functions::Function;
use super::value::{CastFailure, Value};
use super::{ErrorKind, EvalError, Type};
use crate::event::Event;

/// A node's result.
pub(crate) struct Out<'a> {
    pub(crate) value: Value<'a>,
    pub(crate) failed: bool,
}

impl<'a> Out<'a> {
    fn ok(value: Value<'a>) -> Self {
        Out {
            value,
            failed: false,
        }
    }

    fn failed(value: Value<'a>) -> Self {
        Out {
            value,
            failed: true,
        }
    }

    fn zero(ty: Type) -> Self {
        Out::failed(Value::zero(ty))
    }
}

/// Evaluation state: the event and where errors go.
pub(crate) struct Evaluator<'a, 'r> {
    event: &'r Event<'a>,
    collected: Option<Vec<EvalError>>,
    pub(crate) error_count: usize,
}

impl<'a, 'r> Evaluator<'a, 'r> {
    pub(crate) fn new(event: &'r Event<'a>, collect: bool) -> Self {
        Evaluator {
            event,
            collected: collect.then(Vec::new),
            error_count: 0,
        }
    }

    pub(crate) fn into_errors(self) -> Vec<EvalError> {
        self.collected.unwrap_or_default()
    }

    fn error(&mut self, kind: ErrorKind, message: impl FnOnce() -> String) {
        self.error_count += 1;
        if let Some(list) = &mut self.collected {
            list.push(EvalError {
                kind,
                message: message(),
            });
        }
    }

    fn cast_error(&mut self, failure: CastFailure) {
        self.error(ErrorKind::Cast, || failure.0);
    }

    pub(crate) fn eval(&mut self, expr: &'a Expr) -> Out<'a> {
        match expr {
            Expr::Bool(b) => Out::ok(Value::Boolean(*b)),
            Expr::Int(i) => Out::ok(Value::Integer(*i)),
            Expr::Str(s) => Out::ok(Value::String(Cow::Borrowed(s))),
            Expr::Attr(name) => {
                if let Some(v) = self.event.get(name) {
                    Out::ok(v.into())
                } else {
                    self.error(ErrorKind::MissingAttribute, || {
                        format!("attribute `{name}` is not in the event")
                    });
                    // The type of a missing attribute is unknown: assume Boolean (§3.2).
                    Out::zero(Type::Boolean)
                }
            }
            Expr::Exists(name) => Out::ok(Value::Boolean(self.event.get(name).is_some())),
            Expr::Not(inner) => {
                let out = self.eval(inner);
                if out.failed {
                    return Out::zero(Type::Boolean);
                }
                match out.value.into_bool() {
                    Ok(b) => Out::ok(Value::Boolean(!b)),
                    Err(failure) => {
                        self.cast_error(failure);
                        Out::failed(Value::Boolean(true))
                    }
                }
            }
            Expr::Neg(inner) => {
                let out = self.eval(inner);
                if out.failed {
                    return Out::zero(Type::Integer);
                }
                match out.value.into_int() {
                    Ok(i) => self.checked(i.checked_neg(), || format!("-({i}) overflows")),
                    Err(failure) => {
                        self.cast_error(failure);
                        Out::zero(Type::Integer)
                    }
                }
            }
            Expr::Binary { op, left, right } => self.binary(*op, left, right),
            Expr::Like {
                expr,
                pattern,
                negated,
            } => {
                let out = self.eval(expr);
                if out.failed {
                    return Out::zero(Type::Boolean);
                }
                let text = out.value.into_string();
                Out::ok(Value::Boolean(pattern.matches(&text) != *negated))
            }
            Expr::In { expr, set, negated } => self.membership(expr, set, *negated),
            Expr::Call { func, args } => self.call(*func, args),
            Expr::MissingFunction { name, arity } => {
                self.error(ErrorKind::MissingFunction, || {
                    format!("no function {name} takes {arity} argument(s)")
                });
                Out::zero(Type::Boolean)
            }
        }
    }

    fn checked(&mut self, value: Option<i32>, message: impl FnOnce() -> String) -> Out<'a> {
        if let Some(i) = value {
            Out::ok(Value::Integer(i))
        } else {
            self.error(ErrorKind::Math, message);
            Out::zero(Type::Integer)
        }
    }

    fn binary(&mut self, op: BinOp, left: &'a Expr, right: &'a Expr) -> Out<'a> {
        let l = self.eval(left);
        if l.failed {
            return Out::zero(op.result_type());
        }
        if matches!(op, BinOp::And | BinOp::Or) {
            return self.short_circuit(op == BinOp::Or, l.value, right);
        }
        let r = self.eval(right);
        if r.failed {
            return Out::zero(op.result_type());
        }
        match self.apply(op, l.value, r.value) {
            Ok(out) => out,
            Err(failure) => {
                self.cast_error(failure);
                Out::zero(op.result_type())
            }
        }
    }

    /// `AND` (`or == false`) and `OR` (`or == true`): `false AND x` and `true OR x`
    /// never evaluate `x`.
    fn short_circuit(&mut self, or: bool, left: Value<'a>, right: &'a Expr) -> Out<'a> {
        let decided = match left.into_bool() {
            Ok(b) => b,
            Err(failure) => {
                self.cast_error(failure);
                return Out::zero(Type::Boolean);
            }
        };
        if decided == or {
            return Out::ok(Value::Boolean(decided));
        }
        let r = self.eval(right);
        if r.failed {
            return Out::zero(Type::Boolean);
        }
        match r.value.into_bool() {
            Ok(b) => Out::ok(Value::Boolean(b)),
            Err(failure) => {
                self.cast_error(failure);
                Out::zero(Type::Boolean)
            }
        }
    }

    /// Applies `op` to evaluated operands; `Err` is a cast failure of an operand.
    fn apply(&mut self, op: BinOp, l: Value<'a>, r: Value<'a>) -> Result<Out<'a>, CastFailure> {
        let boolean = |b: bool| Ok(Out::ok(Value::Boolean(b)));
        match op {
            BinOp::And | BinOp::Or | BinOp::Xor => {
                let lb = l.into_bool()?;
                boolean(lb != r.into_bool()?)
            }
            // `=` is defined for all three types: the right operand's type decides (§3.7).
            BinOp::Eq | BinOp::NotEq => {
                let target = r.value_type();
                let equal = l.cast(target, false)? == r;
                boolean(equal == (op == BinOp::Eq))
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let (a, b) = (l.into_int()?, r.into_int()?);
                boolean(match op {
                    BinOp::Lt => a < b,
                    BinOp::Le => a <= b,
                    BinOp::Gt => a > b,
                    _ => a >= b,
                })
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
                let (a, b) = (l.into_int()?, r.into_int()?);
                Ok(self.arithmetic(op, a, b))
            }
        }
    }

    fn arithmetic(&mut self, op: BinOp, a: i32, b: i32) -> Out<'a> {
        if matches!(op, BinOp::Div | BinOp::Mod) && b == 0 {
            self.error(ErrorKind::Math, || {
                format!("division by zero in {a} {} 0", op.symbol())
            });
            return Out::zero(Type::Integer);
        }
        let result = match op {
            BinOp::Add => a.checked_add(b),
            BinOp::Sub => a.checked_sub(b),
            BinOp::Mul => a.checked_mul(b),
            // Rust's `/` and `%` truncate toward zero, as CESQL requires.
            BinOp::Div => a.checked_div(b),
            _ => a.checked_rem(b),
        };
        self.checked(result, || {
            format!("{a} {} {b} overflows a 32-bit integer", op.symbol())
        })
    }

    fn membership(&mut self, expr: &'a Expr, set: &'a [Expr], negated: bool) -> Out<'a> {
        let x = self.eval(expr);
        if x.failed {
            return Out::zero(Type::Boolean);
        }
        let target = x.value.value_type();
        let mut found = false;
        let mut cast_failed = false;
        for item in set {
            let out = self.eval(item);
            if out.failed {
                return Out::zero(Type::Boolean);
            }
            match out.value.cast(target, false) {
                Ok(v) if v == x.value => {
                    found = true;
                    break;
                }
                Ok(_) => {}
                Err(failure) => {
                    self.cast_error(failure);
                    cast_failed = true;
                }
            }
        }
        Out {
            value: Value::Boolean(found != negated),
            failed: cast_failed,
        }
    }

    /// Evaluates argument `i` and casts it to the function's parameter type; `None`
    /// when that failed (the error is recorded).
    fn argument(&mut self, func: Function, i: usize, arg: &'a Expr) -> Option<Value<'a>> {
        let out = self.eval(arg);
        if out.failed {
            return None;
        }
        match func.param_type(i) {
            Some(ty) => match out.value.cast(ty, false) {
                Ok(v) => Some(v),
                Err(failure) => {
                    self.cast_error(failure);
                    None
                }
            },
            None => Some(out.value),
        }
    }

    fn call(&mut self, func: Function, args: &'a [Expr]) -> Out<'a> {
        let result = if let [arg] = args {
            // Most calls have one argument: no list to build.
            match self.argument(func, 0, arg) {
                Some(value) => func.call(std::iter::once(value)),
                None => return Out::zero(func.return_type()),
            }
        } else {
            let mut values = Vec::with_capacity(args.len());
            for (i, arg) in args.iter().enumerate() {
                match self.argument(func, i, arg) {
                    Some(value) => values.push(value),
                    None => return Out::zero(func.return_type()),
                }
            }
            func.call(values)
        };
        match result {
            Ok(v) => Out::ok(v),
            Err(failure) => {
                self.error(failure.kind, || failure.message);
                Out::failed(failure.value)
            }
        }
    }
}
