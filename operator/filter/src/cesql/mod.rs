//! CloudEvents SQL Expression Language (CESQL) v1.0.0.
//!
//! [`Expression::parse`] runs the lexer and parser once; [`Expression::evaluate`]
//! returns the value and the error list of CESQL §3.3, and [`Expression::matches`] is
//! the filter form (the result is `true` and no error occurred). Integers are 32-bit
//! signed; every operator and function is total, so evaluation never panics.
//!
//! Engine choices where the spec leaves room (all covered by the TCK or documented in
//! `docs/filters.md`):
//!
//! * `AND`, `OR` and `XOR` share one precedence level and associate left to right.
//! * Integer overflow in `+ - * /`, unary `-` raises a math error and yields `0`.
//! * A call to an unknown function, or with the wrong number of arguments, parses; it
//!   evaluates to `false` with a missing-function error. Filters reject it at compile
//!   time ([`Expression::missing_functions`]).

mod ast;
mod eval;
mod functions;
mod lexer;
mod lower;
mod parser;
mod value;

use std::fmt;

use thiserror::Error;

use crate::event::Event;
pub(crate) use lower::{Comparison, Conjunct};
pub use value::Value;

/// A CESQL primitive type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// `true` / `false`.
    Boolean,
    /// A 32-bit signed integer.
    Integer,
    /// A sequence of Unicode characters.
    String,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Boolean => "Boolean",
            Type::Integer => "Integer",
            Type::String => "String",
        })
    }
}

/// The error types of CESQL §3.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The expression does not parse.
    Parse,
    /// A math operator failed (division by zero, overflow).
    Math,
    /// An implicit or explicit cast failed.
    Cast,
    /// The expression addressed an attribute the event does not have.
    MissingAttribute,
    /// No function has that name and number of arguments.
    MissingFunction,
    /// A function rejected its arguments.
    FunctionEvaluation,
    /// Anything else.
    Generic,
}

impl ErrorKind {
    /// The name the CESQL TCK uses for this kind (`parse`, `missingAttribute`, ...).
    #[must_use]
    pub fn tck_name(self) -> &'static str {
        match self {
            ErrorKind::Parse => "parse",
            ErrorKind::Math => "math",
            ErrorKind::Cast => "cast",
            ErrorKind::MissingAttribute => "missingAttribute",
            ErrorKind::MissingFunction => "missingFunction",
            ErrorKind::FunctionEvaluation => "functionEvaluation",
            ErrorKind::Generic => "generic",
        }
    }
}

/// An error raised while evaluating.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{} error: {message}", kind.tck_name())]
pub struct EvalError {
    /// Which kind of error.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
}

/// The expression is not valid CESQL.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("at offset {position}: {message}")]
pub struct ParseError {
    /// Byte offset in the expression where the problem starts.
    pub position: usize,
    /// What is wrong.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> Self {
        ParseError {
            position,
            message: message.into(),
        }
    }
}

/// The outcome of an evaluation: always a value, plus the errors raised on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation<'a> {
    /// The result.
    pub value: Value<'a>,
    /// The errors, in the order they were raised; empty when all went well.
    pub errors: Vec<EvalError>,
}

/// A parsed CESQL expression, ready to evaluate any number of times.
#[derive(Clone, Debug, PartialEq)]
pub struct Expression {
    source: String,
    root: ast::Expr,
}

impl Expression {
    /// Parses `source`.
    pub fn parse(source: &str) -> Result<Self, ParseError> {
        Ok(Expression {
            source: source.to_owned(),
            root: parser::parse(source)?,
        })
    }

    /// The expression as written.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against `event`, collecting every error with its message.
    #[must_use]
    pub fn evaluate<'a>(&'a self, event: &Event<'a>) -> Evaluation<'a> {
        let mut evaluator = eval::Evaluator::new(event, true);
        let out = evaluator.eval(&self.root);
        Evaluation {
            value: out.value,
            errors: evaluator.into_errors(),
        }
    }

    /// The filter reading of the expression (CESQL §1.2): `true` only when it evaluates
    /// to Boolean `true` without any error.
    #[must_use]
    pub fn matches(&self, event: &Event<'_>) -> bool {
        let mut evaluator = eval::Evaluator::new(event, false);
        let out = evaluator.eval(&self.root);
        evaluator.error_count == 0 && out.value == Value::Boolean(true)
    }

    /// The result type when it is known without an event (`None` for a bare attribute).
    #[must_use]
    pub fn result_type(&self) -> Option<Type> {
        self.root.static_type()
    }

    /// Calls that no function answers, as `NAME/arity`, in the order they appear.
    #[must_use]
    pub fn missing_functions(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.root.walk(&mut |e| {
            if let ast::Expr::MissingFunction { name, arity } = e {
                out.push(format!("{name}/{arity}"));
            }
        });
        out
    }

    /// A necessary condition for [`Expression::matches`], for indexing.
    pub(crate) fn guard(&self) -> Option<crate::guard::Guard> {
        self.root.guard()
    }
}

#[cfg(test)]
mod tests;
