//! Running a jq program within a budget, in this process: the fallback when no
//! worker pool is installed (`herald transform test`, tests). The dispatcher runs
//! programs in worker processes instead ([`crate::worker`]), which can be killed.
//!
//! jaq has no way to interrupt a program, and a program can loop forever
//! (`def f: f; f`) or build a huge value (`[range(1e9)]`). So each run gets its own
//! thread and the caller waits for it at most [`Budget::time`]:
//!
//! * **time**: past the budget the event fails with [`RunError::TimedOut`] and the
//!   caller moves on. The thread cannot be stopped from outside: it is abandoned and
//!   runs on until the program ends. At most [`Budget::max_runaways`] abandoned
//!   threads may run at once in a process; while that many do, further runs fail at
//!   once with [`RunError::Overloaded`] instead of starting.
//! * **output**: the result is written as JSON into a buffer that refuses more than
//!   [`Budget::max_output_bytes`] (the 1 MiB event limit by default).
//! * **not bounded here**: the memory a program uses while it runs, and its stack
//!   depth: deep non-tail recursion overflows the thread's stack ([`STACK_BYTES`]),
//!   which aborts the process. Worker processes bound both.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::RunError;

/// The stack of an evaluation thread: jaq recurses on nested values and calls.
pub const STACK_BYTES: usize = 16 << 20;

/// Abandoned evaluation threads still running, in this process.
static RUNAWAYS: AtomicUsize = AtomicUsize::new(0);

/// What one run may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Wall-clock time for one event.
    pub time: Duration,
    /// Largest transformed event, in bytes of its JSON form.
    pub max_output_bytes: usize,
    /// Most abandoned runs still running before new runs are refused.
    pub max_runaways: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            time: Duration::from_millis(250),
            max_output_bytes: 1 << 20,
            max_runaways: 2,
        }
    }
}

/// Abandoned runs still running in this process.
#[must_use]
pub fn runaways() -> usize {
    RUNAWAYS.load(Ordering::Relaxed)
}

/// Runs `work` on its own thread and waits at most `budget.time` for its answer.
pub(crate) fn bounded<T: Send + 'static>(
    budget: &Budget,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RunError> {
    let running = runaways();
    if running >= budget.max_runaways {
        return Err(RunError::Overloaded(running));
    }
    let (tx, rx) = mpsc::sync_channel(1);
    // Set by the caller when it gives up waiting, so the thread knows, when it
    // finally ends, that it was counted as a runaway.
    let abandoned = std::sync::Arc::new(std::sync::Mutex::new(false));
    let flag = abandoned.clone();
    std::thread::Builder::new()
        .name("herald-transform".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            // A panic in the interpreter fails this event, not the process.
            let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            // Held while answering, so the caller sees either the answer or that
            // this thread has not answered yet, never a half-way state.
            let abandoned = flag
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *abandoned {
                RUNAWAYS.fetch_sub(1, Ordering::Relaxed);
            } else if let Ok(answer) = answer {
                let _ = tx.send(answer);
            }
        })
        .map_err(|e| RunError::Thread(e.to_string()))?;
    match rx.recv_timeout(budget.time) {
        Ok(answer) => Ok(answer),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let mut abandoned = abandoned
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // The answer may have come between the timeout and the lock.
            if let Ok(answer) = rx.try_recv() {
                return Ok(answer);
            }
            *abandoned = true;
            RUNAWAYS.fetch_add(1, Ordering::Relaxed);
            Err(RunError::TimedOut(budget.time))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(RunError::Crashed("the interpreter panicked".into()))
        }
    }
}
