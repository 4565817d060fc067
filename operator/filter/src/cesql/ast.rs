//! The CESQL syntax tree the parser builds and the evaluator walks.

use super::Type;
use super::functions::Function;
use crate::event::Name;
use crate::glob::Glob;
use crate::guard::{self, Atom, Guard, Test};

/// A binary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    And,
    Or,
    Xor,
    Eq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl BinOp {
    /// The operator as written.
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinOp::And => "AND",
            BinOp::Or => "OR",
            BinOp::Xor => "XOR",
            BinOp::Eq => "=",
            BinOp::NotEq => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
        }
    }

    /// The operator's result type.
    pub(crate) fn result_type(self) -> Type {
        match self {
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => Type::Integer,
            _ => Type::Boolean,
        }
    }
}

/// An expression node.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Bool(bool),
    Int(i32),
    Str(String),
    /// A context attribute or extension, by lower-case name.
    Attr(Name),
    /// `EXISTS name`.
    Exists(Name),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary {
        op: BinOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Like {
        expr: Box<Expr>,
        pattern: Glob,
        negated: bool,
    },
    In {
        expr: Box<Expr>,
        set: Vec<Expr>,
        negated: bool,
    },
    Call {
        func: Function,
        args: Vec<Expr>,
    },
    /// A call no built-in function answers (unknown name or arity). It evaluates to
    /// `false` with a missing-function error, as CESQL §3.5 says.
    MissingFunction {
        name: String,
        arity: usize,
    },
}

impl Expr {
    /// The type the expression evaluates to, when it is known before evaluation.
    /// Attributes are unknown: a structured event may carry a typed extension.
    pub(crate) fn static_type(&self) -> Option<Type> {
        match self {
            Expr::Bool(_)
            | Expr::Exists(_)
            | Expr::Not(_)
            | Expr::Like { .. }
            | Expr::In { .. }
            | Expr::MissingFunction { .. } => Some(Type::Boolean),
            Expr::Int(_) | Expr::Neg(_) => Some(Type::Integer),
            Expr::Str(_) => Some(Type::String),
            Expr::Attr(_) => None,
            Expr::Binary { op, .. } => Some(op.result_type()),
            Expr::Call { func, .. } => Some(func.return_type()),
        }
    }

    /// A guard of "evaluates to `true` without error" (see [`crate::guard`]). Only
    /// `AND`, `OR` and string tests of attributes contribute: `attr = 'x'` casts the
    /// attribute to a String (its canonical text), `'x' = attr` and `IN` cast the
    /// literals to the attribute's type, so they count only for context attributes.
    pub(crate) fn guard(&self) -> Option<Guard> {
        let atom =
            |name: &Name, test, value: &str| Some(Guard::one(Atom::attribute(name, test, value)));
        match self {
            Expr::Binary {
                op: BinOp::And,
                left,
                right,
            } => guard::all_of([left.guard(), right.guard()]),
            Expr::Binary {
                op: BinOp::Or,
                left,
                right,
            } => guard::any_of([left.guard(), right.guard()]),
            Expr::Binary {
                op: BinOp::Eq,
                left,
                right,
            } => match (left.as_ref(), right.as_ref()) {
                (Expr::Attr(name), Expr::Str(s)) => atom(name, Test::Equals, s),
                (Expr::Str(s), Expr::Attr(name)) if name.is_context() => {
                    atom(name, Test::Equals, s)
                }
                _ => None,
            },
            Expr::Like {
                expr,
                pattern,
                negated: false,
            } => match expr.as_ref() {
                Expr::Attr(name) => {
                    let (test, value) = pattern.literal_shape()?;
                    atom(name, test, &value)
                }
                _ => None,
            },
            Expr::In {
                expr,
                set,
                negated: false,
            } => match expr.as_ref() {
                Expr::Attr(name) if name.is_context() => {
                    let atoms = set
                        .iter()
                        .map(|item| {
                            let text = match item {
                                Expr::Str(s) => s.clone(),
                                Expr::Int(i) => i.to_string(),
                                Expr::Bool(b) => b.to_string(),
                                _ => return None,
                            };
                            Some(Atom::attribute(name, Test::Equals, &text))
                        })
                        .collect::<Option<Vec<_>>>()?;
                    Guard::of(atoms)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Calls `f` on every node, depth first.
    pub(crate) fn walk<'s>(&'s self, f: &mut impl FnMut(&'s Expr)) {
        f(self);
        match self {
            Expr::Not(e) | Expr::Neg(e) | Expr::Like { expr: e, .. } => e.walk(f),
            Expr::Binary { left, right, .. } => {
                left.walk(f);
                right.walk(f);
            }
            Expr::In { expr, set, .. } => {
                expr.walk(f);
                for e in set {
                    e.walk(f);
                }
            }
            Expr::Call { args, .. } => {
                for e in args {
                    e.walk(f);
                }
            }
            Expr::Bool(_)
            | Expr::Int(_)
            | Expr::Str(_)
            | Expr::Attr(_)
            | Expr::Exists(_)
            | Expr::MissingFunction { .. } => {}
        }
    }
}
