//! Why a transform does not compile, or did not produce an event.

use herald_cloudevents::EventError;
use thiserror::Error;

/// A transform that does not compile. The `Display` form names where
/// (`transform.jq`, `transform.template.paths.x`), for a Trigger's
/// `TransformValid` condition.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TransformError {
    /// Both `jq` and `template`.
    #[error("transform: set exactly one of jq and template, found both")]
    Both,
    /// The jq program does not parse: line, column and what was expected.
    #[error("transform.jq: {line}:{column}: {message}")]
    JqSyntax {
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What the parser expected there.
        message: String,
    },
    /// The jq program uses names that are not defined (or not allowed here).
    #[error("transform.jq: undefined {0}")]
    JqUndefined(String),
    /// The program is longer than [`crate::jq::MAX_PROGRAM_BYTES`].
    #[error("transform.jq: the program is longer than {0} bytes")]
    JqTooLong(usize),
    /// A template path that is not a supported JSON path.
    #[error("transform.template.paths.{name}: {why}")]
    Path {
        /// The placeholder.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// Something else in the template.
    #[error("transform.template.{field}: {why}")]
    Template {
        /// `paths` or `data`.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// Why one event could not be transformed: final for that event (running the same
/// program on the same event again gives the same answer).
#[derive(Debug, Error)]
pub enum RunError {
    /// The program raised an error.
    #[error("the jq program failed: {0}")]
    Jq(String),
    /// The program gave no output.
    #[error("the jq program gave no output; a transform must give exactly one event")]
    NoOutput,
    /// The program gave more than one output.
    #[error("the jq program gave more than one output; a transform must give exactly one event")]
    SeveralOutputs,
    /// The output is not a JSON object.
    #[error("the transform gave {0}, not an event object")]
    NotAnObject(&'static str),
    /// The output cannot be written as JSON (such as NaN).
    #[error("the transform's output is not JSON: {0}")]
    Output(String),
    /// The output is larger than the budget allows.
    #[error("the transformed event is larger than {0} bytes")]
    TooLarge(usize),
    /// The output is not a valid CloudEvent.
    #[error("the transformed event is not a valid CloudEvent: {0}")]
    Invalid(#[source] EventError),
    /// The program ran past its time budget (it was abandoned, see [`crate::run`]).
    #[error("the transform ran longer than its budget of {0:?}")]
    TimedOut(std::time::Duration),
    /// Every worker is busy (or, in-process, too many programs that ran past their
    /// budget are still running).
    #[error("{0} transforms are running; none could start within the budget")]
    Overloaded(usize),
    /// What a worker process said went wrong.
    #[error("{0}")]
    Worker(String),
    /// The program crashed its interpreter: a panic, or a worker process that died
    /// (out of memory or stack).
    #[error("the transform crashed: {0}")]
    Crashed(String),
    /// The evaluation thread or worker process could not start.
    #[error("the transform could not run: {0}")]
    Thread(String),
}

impl RunError {
    /// Whether the failure is about this process, not the event: every worker was
    /// busy, or none could start. Trying the event again later can succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, RunError::Overloaded(_) | RunError::Thread(_))
    }
}
