//! `herald filter test` as users run it: the three outcomes and their exit codes.

use std::process::Command;

fn run(name: &str, filter: &str, event: &str) -> (Option<i32>, String) {
    let dir =
        std::env::temp_dir().join(format!("herald-filter-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (f, e) = (dir.join("filter.yaml"), dir.join("event.json"));
    std::fs::write(&f, filter).unwrap();
    std::fs::write(&e, event).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["filter", "test", "--filter"])
        .arg(&f)
        .arg("--event")
        .arg(&e)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

const EVENT: &str = r#"{"specversion":"1.0","id":"1","source":"shop/eu","type":"order.created","tenant":"acme","data":{"amount":150}}"#;

#[test]
fn a_matching_trigger_manifest_says_match() {
    let trigger = "apiVersion: eventing.herald.dev/v1alpha1\nkind: Trigger\nmetadata: {name: t}\nspec:\n  broker: default\n  filter: {attributes: {type: order.created}}\n  filters:\n    - cesql: \"source LIKE 'shop/%' AND tenant = 'acme'\"\n    - pattern: {data: {amount: [{numeric: ['>', 100]}]}}\n  subscriber: {uri: http://x}\n";
    assert_eq!(run("match", trigger, EVENT), (Some(0), "match".to_owned()));
}

#[test]
fn a_bare_filter_that_does_not_match_says_no_match() {
    assert_eq!(
        run(
            "no-match",
            r#"{"filters": [{"exact": {"tenant": "other"}}]}"#,
            EVENT
        ),
        (Some(1), "no match".to_owned())
    );
}

#[test]
fn invalid_filters_and_events_say_why() {
    let (code, out) = run("bad-filter", "filters:\n  - cesql: \"type = \"\n", EVENT);
    assert_eq!(code, Some(2));
    assert!(out.starts_with("invalid: filters[0].cesql"), "{out}");
    let (code, out) = run(
        "bad-event",
        "filters: []\n",
        r#"{"specversion":"1.0","source":"s","type":"t"}"#,
    );
    assert_eq!(code, Some(2));
    assert!(out.contains("\"id\""), "{out}");
}
