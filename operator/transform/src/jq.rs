//! `transform.jq`: a jq program over the event in the CloudEvents JSON format.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data::JustLut};
use jaq_json::Val;

use crate::{RunError, TransformError};

/// Longest program accepted (Kubernetes objects are small; this is generous).
pub const MAX_PROGRAM_BYTES: usize = 64 << 10;

/// Natives a transform may not call: they read the dispatcher's environment or
/// inputs, write to its logs, or stop it.
const DENIED: [&str; 6] = [
    "env",
    "halt",
    "input",
    "inputs",
    "debug_empty",
    "stderr_empty",
];

type Data = JustLut<Val>;

/// A compiled jq program.
pub(crate) struct Program {
    source: String,
    filter: jaq_core::Filter<Data>,
}

impl Program {
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    pub(crate) fn compile(code: &str) -> Result<Program, TransformError> {
        if code.len() > MAX_PROGRAM_BYTES {
            return Err(TransformError::JqTooLong(MAX_PROGRAM_BYTES));
        }
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        // Denied natives stay defined (the standard library's definitions call
        // them) but fail when called.
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs())
            .map(|(name, arity, native)| {
                if DENIED.contains(&name) {
                    (name, arity, jaq_core::Native::<Data>::new(denied::<Data>))
                } else {
                    (name, arity, native)
                }
            });
        let arena = Arena::default();
        let modules = Loader::new(defs)
            .load(&arena, File { code, path: () })
            .map_err(|errors| load_error(code, errors))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errors| {
                let names: Vec<String> = errors
                    .into_iter()
                    .flat_map(|(_, undefined)| undefined)
                    .map(|(name, what)| {
                        let (line, column) = position(code, name);
                        let arity = match what {
                            jaq_core::compile::Undefined::Filter(arity) => format!("/{arity}"),
                            _ => String::new(),
                        };
                        format!("{} {name}{arity} at {line}:{column}", what.as_str())
                    })
                    .collect();
                TransformError::JqUndefined(names.join(", "))
            })?;
        Ok(Program {
            source: code.to_owned(),
            filter,
        })
    }

    /// Runs the program on `input` (an event in the JSON format): its only output, as JSON, at most `max` bytes.
    pub(crate) fn run(&self, input: &[u8], max: usize) -> Result<serde_json::Value, RunError> {
        let input = jaq_json::read::parse_single(input).map_err(|e| RunError::Jq(e.to_string()))?;
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([]));
        let mut outputs = self.filter.id.run((ctx, input));
        let first = match outputs.next() {
            None => return Err(RunError::NoOutput),
            Some(result) => result.map_err(exception)?,
        };
        if outputs.next().is_some() {
            return Err(RunError::SeveralOutputs);
        }
        let mut json = Capped::new(max);
        if std::fmt::write(&mut json, format_args!("{first}")).is_err() {
            return Err(RunError::TooLarge(max));
        }
        serde_json::from_str(&json.text).map_err(|e| RunError::Output(e.to_string()))
    }
}

/// What a denied native does.
fn denied<D: jaq_core::DataT>(_: jaq_core::Cv<'_, D>) -> jaq_core::ValXs<'_, D::V<'_>> {
    jaq_core::native::bome(Err(jaq_core::Error::str(
        "env, input, inputs, halt, debug and stderr are not available in a transform",
    )))
}

/// An error or `halt` raised by the program, as text.
fn exception(e: jaq_core::Exn<'_, Val>) -> RunError {
    match e.get_err() {
        Ok(error) => RunError::Jq(error.to_string()),
        Err(_) => RunError::Jq("the program stopped without an output".into()),
    }
}

/// A string that refuses to grow past its limit.
struct Capped {
    text: String,
    max: usize,
}

impl Capped {
    fn new(max: usize) -> Self {
        Capped {
            text: String::new(),
            max,
        }
    }
}

impl std::fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.text.len() + s.len() > self.max {
            return Err(std::fmt::Error);
        }
        self.text.push_str(s);
        Ok(())
    }
}

/// 1-based line and column of `part`, a slice of `code`.
fn position(code: &str, part: &str) -> (usize, usize) {
    let start = (part.as_ptr() as usize)
        .checked_sub(code.as_ptr() as usize)
        .filter(|s| *s <= code.len())
        .unwrap_or(code.len());
    let mut start = start;
    while !code.is_char_boundary(start) {
        start -= 1;
    }
    let before = &code[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

fn load_error(code: &str, errors: jaq_core::load::Errors<&str, ()>) -> TransformError {
    use jaq_core::load::Error;
    let first = errors.into_iter().next().map(|(_, e)| e);
    let (message, at) = match first {
        Some(Error::Lex(errors)) => match errors.into_iter().next() {
            Some((expect, at)) => (format!("expected {}", expect.as_str()), Some(at)),
            None => ("cannot read the program".to_owned(), None),
        },
        Some(Error::Parse(errors)) => match errors.into_iter().next() {
            Some((expect, at)) => (format!("expected {}", expect.as_str()), Some(at)),
            None => ("cannot parse the program".to_owned(), None),
        },
        Some(Error::Io(errors)) => (
            // Modules cannot be loaded: there is no file system to load them from.
            format!(
                "imports are not supported ({})",
                errors.first().map_or("", |(path, _)| *path)
            ),
            None,
        ),
        None => ("cannot parse the program".to_owned(), None),
    };
    let (line, column) = at.map_or((1, 1), |at| position(code, at));
    TransformError::JqSyntax {
        line,
        column,
        message,
    }
}
