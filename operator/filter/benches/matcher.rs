//! 1,000 Triggers of mixed dialects against realistic events: the indexed
//! `MatcherSet` (what the dispatcher side uses per Broker) against a linear scan of
//! the same compiled filters. Per event, the JSON data is parsed once, then every
//! Trigger is decided. Run: `cargo bench -p herald-filter`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use herald_filter::{CompiledFilter, Event, MatcherSet};
use serde_json::{Value, json};

const TRIGGERS: usize = 1000;

/// Mixed dialects, as a busy Broker would have them.
fn filter(i: usize) -> Value {
    match i % 10 {
        0..=3 => json!({"exact": {"type": format!("com.example.t{}", i % 97)}}),
        4 => json!({"prefix": {"source": format!("shop/{}", i % 13)}}),
        5 => json!({"suffix": {"subject": format!("-{}", i % 7)}}),
        6 => {
            json!({"cesql": format!("source LIKE 'shop/%' AND tenant = 'acme{}' AND priority > {}", i % 5, i % 3)})
        }
        7 => {
            json!({"pattern": {"data": {"order": {"amount": [{"numeric": [">", (i % 50) * 10]}], "currency": ["EUR", "USD"]}}}})
        }
        8 => {
            json!({"all": [{"exact": {"type": format!("com.example.t{}", i % 97)}}, {"not": {"exact": {"tenant": "blocked"}}}]})
        }
        _ => {
            json!({"any": [{"prefix": {"type": "com.example.t1"}}, {"cesql": format!("EXISTS region AND region = 'eu-{}'", i % 4)}]})
        }
    }
}

fn data(i: usize) -> Value {
    let items: Vec<Value> = (0..20)
        .map(|k| json!({"sku": format!("SKU-{k:05}"), "qty": k % 4 + 1, "price": 9.99 + f64::from(k)}))
        .collect();
    json!({"order": {"id": format!("o-{i}"), "amount": (i * 37) % 600, "currency": if i % 3 == 0 { "EUR" } else { "GBP" },
        "customer": {"id": i % 1000, "name": "Ada Lovelace", "email": "ada@example.com"}, "items": items}})
}

struct Sample {
    id: String,
    ty: String,
    source: String,
    subject: String,
    tenant: String,
    region: String,
    body: Vec<u8>,
}

fn sample(i: usize) -> Sample {
    Sample {
        id: format!("e-{i}"),
        ty: format!("com.example.t{}", i % 97),
        source: format!("shop/{}", i % 13),
        subject: format!("order-{}", i % 7),
        tenant: format!("acme{}", i % 5),
        region: format!("eu-{}", i % 4),
        body: serde_json::to_vec(&data(i)).unwrap(),
    }
}

/// Parses the data once and counts the Triggers that match, with `decide`.
fn evaluate(s: &Sample, decide: &dyn Fn(&Event<'_>) -> usize) -> usize {
    let parsed: Value = serde_json::from_slice(&s.body).unwrap();
    let event = Event::new(&s.id, &s.source, "1.0", &s.ty)
        .with_subject(&s.subject)
        .with_datacontenttype("application/json")
        .with_extension("tenant", s.tenant.as_str())
        .with_extension("region", s.region.as_str())
        .with_extension("priority", 2)
        .with_data(&parsed);
    decide(&event)
}

/// Median and p99 of per-event time over `rounds` rounds of all samples; total matches.
fn measure(
    samples: &[Sample],
    rounds: usize,
    decide: &dyn Fn(&Event<'_>) -> usize,
) -> (Duration, Duration, usize) {
    let mut per_event = Vec::with_capacity(rounds);
    let mut matches = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        matches = samples.iter().map(|s| evaluate(s, decide)).sum::<usize>();
        per_event.push(start.elapsed() / u32::try_from(samples.len()).unwrap());
    }
    per_event.sort_unstable();
    (per_event[rounds / 2], per_event[rounds * 99 / 100], matches)
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn main() {
    let filters: Vec<CompiledFilter> = (0..TRIGGERS)
        .map(|i| CompiledFilter::from_filter(&filter(i)).expect("valid"))
        .collect();
    let mut set = MatcherSet::new();
    for (i, f) in filters.iter().enumerate() {
        set.insert(i, f.clone());
    }
    let samples: Vec<Sample> = (0..1000).map(sample).collect();
    let rounds = 200;
    let indexed = measure(&samples, rounds, &|e| black_box(set.matching(e).count()));
    let linear = measure(&samples, rounds, &|e| {
        black_box(filters.iter().filter(|f| f.matches(e)).count())
    });
    let parse_only = measure(&samples, rounds, &|_| 0);
    assert_eq!(indexed.2, linear.2, "the index must not change the answer");

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "filter benchmark: {TRIGGERS} Triggers (40 % exact type, 10 % each prefix, suffix, CESQL, pattern on data, all/not, any), 1,000 events with ~2 KB JSON data, {rounds} rounds"
    );
    println!("| evaluation | µs per event, median | p99 | events/s per core |");
    println!("|---|---:|---:|---:|");
    for (name, (median, p99, _)) in [
        ("indexed MatcherSet", indexed),
        ("linear scan (baseline)", linear),
        ("parsing the data alone", parse_only),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.0} |",
            us(median),
            us(p99),
            1.0 / median.as_secs_f64()
        );
    }
    println!();
    println!(
        "matches per round: {} ({:.1} Triggers per event); indexed / linear time: {:.2}",
        indexed.2,
        indexed.2 as f64 / samples.len() as f64,
        us(indexed.0) / us(linear.0)
    );
}
