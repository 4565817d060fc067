//! Transform worker processes (`herald transform worker`): a runaway jq program is
//! killed at its deadline, and one that exhausts memory or stack dies alone; the
//! next event gets a fresh worker.

use std::time::{Duration, Instant};

use herald_cloudevents::CloudEvent;
use herald_transform::{Budget, RunError, Transform, worker};

#[test]
fn runaway_programs_are_killed_and_crashes_stay_in_their_worker() {
    worker::install(
        env!("CARGO_BIN_EXE_herald").into(),
        vec!["transform".into(), "worker".into()],
        1,
    );
    let event = CloudEvent::new("1", "/s", "t");
    let budget = Budget {
        time: Duration::from_secs(3),
        ..Budget::default()
    };
    let run = |program: &str, budget: Budget| {
        Transform::jq(program)
            .unwrap()
            .with_budget(budget)
            .apply(&event)
    };
    assert_eq!(run(r#".type = "u""#, budget).unwrap().type_(), "u");

    let start = Instant::now();
    let short = Budget {
        time: Duration::from_millis(300),
        ..budget
    };
    assert!(matches!(
        run("def f: f; f", short),
        Err(RunError::TimedOut(_))
    ));
    assert!(start.elapsed() < Duration::from_secs(2));

    for crash in ["def f: 1 + f; f", "[range(1e10)] | length"] {
        let result = run(crash, budget);
        assert!(
            matches!(result, Err(RunError::Crashed(_) | RunError::TimedOut(_))),
            "{crash}: {result:?}"
        );
    }
    // One worker at most, and it was killed or died each time: a new one answers.
    assert_eq!(run(".", budget).unwrap().id(), "1");
}
