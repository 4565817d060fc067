//! Worker processes: jq programs run outside the dispatcher, so a runaway one can be
//! stopped.
//!
//! A thread cannot be killed, a process can. A dispatcher that calls [`install`] runs
//! each jq program in a worker process (`herald transform worker`, the same binary),
//! one request at a time per worker, over lines of JSON on its stdin and stdout. The
//! dispatcher waits for the answer at most the time budget; past it, it kills the
//! worker (its CPU and memory come back at once) and starts a new one for the next
//! event. A worker limits its own address space ([`WORKER_MEMORY_BYTES`]), so a
//! program that allocates without end makes its worker fail an allocation and die;
//! so does one that overflows its stack. Both fail only that event.
//!
//! Without [`install`] (tests, `herald transform test`) programs run on a thread of
//! the calling process, see [`crate::run`].

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{Budget, RunError, Transform};

/// The address space a worker allows itself: room for the binary, its allocator's
/// reservations and a program's values, not for a runaway one's.
pub const WORKER_MEMORY_BYTES: u64 = 2 << 30;
/// Programs a worker keeps compiled.
const CACHED_PROGRAMS: usize = 64;

/// The process-wide pool, once installed.
static POOL: OnceLock<Pool> = OnceLock::new();

/// Runs jq programs in worker processes started as `program args...`, at most `max`
/// at once. Call once, at start-up; later calls are ignored.
pub fn install(program: PathBuf, args: Vec<String>, max: usize) {
    let _ = POOL.set(Pool {
        program,
        args,
        max: max.max(1),
        state: Mutex::new(State::default()),
        freed: Condvar::new(),
    });
}

pub(crate) fn pool() -> Option<&'static Pool> {
    POOL.get()
}

#[derive(Default)]
struct State {
    idle: Vec<Worker>,
    running: usize,
}

pub(crate) struct Pool {
    program: PathBuf,
    args: Vec<String>,
    max: usize,
    state: Mutex<State>,
    freed: Condvar,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Worker {
    fn start(program: &PathBuf, args: &[String]) -> Result<Worker, RunError> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| RunError::Thread(format!("cannot start a transform worker: {e}")))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(RunError::Thread("a transform worker without pipes".into()));
        };
        // A reader thread per worker: the caller waits on the channel with a deadline.
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name("herald-transform-worker".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| RunError::Thread(e.to_string()))?;
        Ok(Worker {
            child,
            stdin,
            lines,
        })
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pool {
    /// Runs `request` on a worker, waiting at most `budget.time` for its answer.
    pub(crate) fn run(&self, request: &Value, budget: &Budget) -> Result<Value, RunError> {
        let mut worker = self.take(budget.time)?;
        let mut line = request.to_string();
        line.push('\n');
        let answer = match worker
            .stdin
            .write_all(line.as_bytes())
            .and_then(|()| worker.stdin.flush())
        {
            Ok(()) => worker.lines.recv_timeout(budget.time),
            Err(_) => Err(mpsc::RecvTimeoutError::Disconnected),
        };
        let result = match answer {
            Ok(text) => {
                let value = serde_json::from_str(&text)
                    .map_err(|e| RunError::Crashed(format!("a worker's answer: {e}")));
                self.give_back(Some(worker));
                return value;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(RunError::TimedOut(budget.time)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(RunError::Crashed(
                "its worker process died (out of memory or stack?)".into(),
            )),
        };
        worker.kill();
        self.give_back(None);
        result
    }

    /// An idle worker, a new one, or — when `max` run — the first freed within `wait`.
    fn take(&self, wait: Duration) -> Result<Worker, RunError> {
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut state, _) = self
            .freed
            .wait_timeout_while(state, wait, |s| s.idle.is_empty() && s.running >= self.max)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(worker) = state.idle.pop() {
            return Ok(worker);
        }
        if state.running >= self.max {
            return Err(RunError::Overloaded(state.running));
        }
        state.running += 1;
        drop(state);
        Worker::start(&self.program, &self.args).inspect_err(|_| self.give_back(None))
    }

    /// Returns a worker after use; `None` for one that was killed.
    fn give_back(&self, worker: Option<Worker>) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match worker {
            Some(w) => state.idle.push(w),
            None => state.running -= 1,
        }
        drop(state);
        self.freed.notify_one();
    }
}

/// The request for running `program` on `event` (JSON format) with a `max` output.
pub(crate) fn request(program: &str, event: &[u8], max: usize) -> Value {
    json!({"jq": program, "event": String::from_utf8_lossy(event), "max": max})
}

/// The worker's side: answers requests from stdin on stdout until stdin closes.
pub fn serve() -> std::io::Result<()> {
    limit_memory();
    // A worker busy with a runaway program when its dispatcher stops goes with it.
    if let Err(e) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
    {
        eprintln!("herald transform worker: cannot follow the dispatcher's exit: {e}");
    }
    let mut cache: HashMap<String, Transform> = HashMap::new();
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let answer = answer(&line?, &mut cache);
        let mut out = stdout.lock();
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}

fn answer(line: &str, cache: &mut HashMap<String, Transform>) -> Value {
    let Ok(request) = serde_json::from_str::<Value>(line) else {
        return json!({"error": "not a request"});
    };
    let program = request["jq"].as_str().unwrap_or_default();
    let max = request["max"]
        .as_u64()
        .and_then(|m| usize::try_from(m).ok())
        .unwrap_or(1 << 20);
    if !cache.contains_key(program) {
        if cache.len() >= CACHED_PROGRAMS {
            cache.clear();
        }
        match Transform::jq(program) {
            Ok(t) => cache.insert(program.to_owned(), t),
            Err(e) => return json!({"error": e.to_string()}),
        };
    }
    let event = request["event"].as_str().unwrap_or_default().as_bytes();
    match cache[program].run_jq_here(event, max) {
        Ok(output) => json!({"output": output}),
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// Caps the worker's address space, so a runaway allocation fails here and not in
/// the dispatcher.
fn limit_memory() {
    let limit = rustix::process::Rlimit {
        current: Some(WORKER_MEMORY_BYTES),
        maximum: Some(WORKER_MEMORY_BYTES),
    };
    if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::As, limit) {
        eprintln!("herald transform worker: cannot limit memory: {e}");
    }
}
