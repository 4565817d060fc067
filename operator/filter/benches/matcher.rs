//! 1,000 Triggers of mixed dialects in one `MatcherSet` against realistic events
//! (about 2 KB of JSON data, four extensions): the time to find every matching
//! Trigger of an event through `matching()`, against a linear scan of the same
//! compiled filters. Run: `cargo bench -p herald-filter` (optionally
//! `-- --rounds N`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use herald_filter::{CompiledFilter, Event, MatcherSet};
use serde_json::{Value, json};

const TRIGGERS: usize = 1000;
const EVENTS: usize = 1000;

fn ty(i: usize) -> String {
    format!("com.example.shop.t{}", i % 97)
}

/// One Trigger's filters, as a busy Broker would have them (the share of each kind
/// is in `MIX`).
fn trigger(i: usize) -> CompiledFilter {
    let filter = match i % 20 {
        0..=5 => json!({"exact": {"type": ty(i)}}),
        6 => {
            let attributes = [("type", ty(i)), ("tenant", format!("acme{}", i % 5))];
            let pairs = attributes.iter().map(|(k, v)| (*k, v.as_str()));
            return CompiledFilter::from_parts(pairs, &[]).expect("valid");
        }
        7 | 8 => json!({"prefix": {"source": format!("shop/{}", i % 13)}}),
        9 | 10 => json!({"suffix": {"subject": format!("-{}", i % 7)}}),
        11 | 12 => json!({"cesql": format!(
            "source LIKE 'shop/%' AND tenant = 'acme{}' AND priority > {}", i % 5, i % 3)}),
        13 | 14 => json!({"pattern": {"data": {"order": {
            "amount": [{"numeric": [">", (i % 50) * 10]}], "currency": ["EUR", "USD"]}}}}),
        15 => json!({"pattern": {"source": [{"prefix": format!("shop/{}", i % 13)}],
            "data": {"order": {"customer": {"tier": ["gold", "platinum"]}}}}}),
        16 => {
            json!({"all": [{"exact": {"type": ty(i)}}, {"not": {"exact": {"tenant": "blocked"}}}]})
        }
        17 => json!({"any": [{"prefix": {"type": "com.example.shop.t1"}},
            {"cesql": format!("EXISTS region AND region = 'eu-{}'", i % 4)}]}),
        18 => json!({"cesql": format!("INT(priority) >= {} AND NOT EXISTS blocked", i % 4)}),
        _ => {
            json!({"pattern": {"data": {"order": {"amount": [{"numeric": [">", 300 + i % 200]}]}}}})
        }
    };
    CompiledFilter::from_filter(&filter).expect("valid")
}

const MIX: &str = "30 % exact type, 5 % filter.attributes (type + tenant), 10 % prefix (source), \
10 % suffix (subject), 10 % CESQL (LIKE + = + >), 10 % pattern on data (numeric + list), \
5 % pattern on source and data, 5 % all/not, 5 % any (prefix | CESQL), \
5 % CESQL without any equality, 5 % numeric-only pattern";

fn data(i: usize) -> Value {
    let items: Vec<Value> = (0..20)
        .map(|k| json!({"sku": format!("SKU-{k:05}"), "qty": k % 4 + 1, "price": 9.99 + f64::from(k)}))
        .collect();
    let tier = ["gold", "silver", "bronze", "platinum"][i % 4];
    json!({"order": {"id": format!("o-{i}"), "amount": (i * 37) % 600,
        "currency": if i % 3 == 0 { "EUR" } else { "GBP" },
        "customer": {"id": i % 1000, "name": "Ada Lovelace", "email": "ada@example.com", "tier": tier},
        "items": items}})
}

/// What the dispatcher holds for one event: strings, and the raw JSON body.
struct Sample {
    id: String,
    ty: String,
    source: String,
    subject: String,
    tenant: String,
    region: String,
    priority: String,
    body: Vec<u8>,
}

fn sample(i: usize) -> Sample {
    Sample {
        id: format!("e-{i}"),
        ty: ty(i),
        source: format!("shop/{}", i % 13),
        subject: format!("order-{}", i % 7),
        tenant: format!("acme{}", i % 5),
        region: format!("eu-{}", i % 4),
        priority: (i % 4).to_string(),
        body: serde_json::to_vec(&data(i)).expect("json"),
    }
}

fn view<'a>(s: &'a Sample, data: &'a Value) -> Event<'a> {
    Event::new(&s.id, &s.source, "1.0", &s.ty)
        .with_subject(&s.subject)
        .with_time("2026-11-23T08:00:00Z")
        .with_datacontenttype("application/json")
        .with_extension("tenant", s.tenant.as_str())
        .with_extension("region", s.region.as_str())
        .with_extension("priority", s.priority.as_str())
        .with_extension(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .with_data(data)
}

struct Stats {
    median: Duration,
    p99: Duration,
    mean: Duration,
    per_event: usize,
}

/// Times `work` for every event, `rounds` times over; `work` returns a count.
fn measure<T>(items: &[T], rounds: usize, work: impl Fn(&T) -> usize) -> Stats {
    let mut times = Vec::with_capacity(items.len() * rounds);
    let mut total = 0;
    for round in 0..=rounds {
        for item in items {
            let start = Instant::now();
            let n = black_box(work(black_box(item)));
            let took = start.elapsed();
            if round > 0 {
                // Round 0 warms caches up.
                times.push(took);
                total += n;
            }
        }
    }
    let mean = times.iter().sum::<Duration>() / u32::try_from(times.len()).expect("count");
    times.sort_unstable();
    Stats {
        median: times[times.len() / 2],
        p99: times[times.len() * 99 / 100],
        mean,
        per_event: total / times.len(),
    }
}

#[allow(clippy::too_many_lines, clippy::cast_precision_loss)] // one table, printed in order
fn main() {
    let rounds = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(30);
    let filters: Vec<CompiledFilter> = (0..TRIGGERS).map(trigger).collect();
    let mut set = MatcherSet::new();
    for (i, f) in filters.iter().enumerate() {
        set.insert(i, f.clone());
    }
    let samples: Vec<Sample> = (0..EVENTS).map(sample).collect();
    let parsed: Vec<Value> = samples
        .iter()
        .map(|s| serde_json::from_slice(&s.body).expect("json"))
        .collect();
    let events: Vec<Event<'_>> = samples
        .iter()
        .zip(&parsed)
        .map(|(s, d)| view(s, d))
        .collect();

    if std::env::var_os("BREAKDOWN").is_some() {
        for cat in 0..20 {
            let mut sub = MatcherSet::new();
            for i in (0..TRIGGERS).filter(|i| i % 20 == cat) {
                sub.insert(i, filters[i].clone());
            }
            let st = measure(&events, 5, |e| sub.matching(e).count());
            let cand =
                events.iter().map(|e| sub.candidate_count(e)).sum::<usize>() as f64 / EVENTS as f64;
            println!(
                "cat {cat}: mean {:.2} us, candidates {cand:.1}, matches {}",
                st.mean.as_secs_f64() * 1e6,
                st.per_event
            );
        }
        return;
    }
    if let Some(cat) = std::env::var_os("PROFILE_ONLY") {
        let cat: usize = cat.to_str().unwrap().parse().unwrap_or(99);
        let mut set = MatcherSet::new();
        for i in (0..TRIGGERS).filter(|i| cat == 99 || i % 20 == cat) {
            set.insert(i, filters[i].clone());
        }
        let mut n = 0;
        for _ in 0..rounds {
            for e in &events {
                n += black_box(set.matching(e).count());
            }
        }
        println!("{n}");
        return;
    }
    for event in &events {
        let mut indexed = set.matching_keys(event);
        indexed.sort_unstable();
        let linear: Vec<usize> = (0..TRIGGERS)
            .filter(|i| filters[*i].matches(event))
            .collect();
        assert_eq!(indexed, linear, "the index must not change the answer");
    }
    let candidates = events.iter().map(|e| set.candidate_count(e)).sum::<usize>() / EVENTS;

    let indexed = measure(&events, rounds, |e| set.matching(e).count());
    let linear = measure(&events, rounds, |e| {
        filters.iter().filter(|f| f.matches(e)).count()
    });
    let parse = measure(&samples, rounds, |s| {
        serde_json::from_slice::<Value>(&s.body).map_or(0, |v| usize::from(v.is_object()))
    });
    let body = samples.iter().map(|s| s.body.len()).sum::<usize>() / EVENTS;

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{TRIGGERS} Triggers ({MIX}); {EVENTS} events with {body} B of JSON data and 4 extensions; \
         {rounds} rounds; each event timed alone"
    );
    println!(
        "{} filters have no guard and are evaluated for every event; the index selects {candidates} candidates per event on average",
        set.unindexed_count()
    );
    println!();
    println!(
        "| evaluation | µs per event, median | p99 | mean | events/s per core | matches per event |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, s) in [
        ("`MatcherSet::matching` (indexed)", &indexed),
        ("linear scan of the same filters (baseline)", &linear),
        ("for scale: parsing the JSON data", &parse),
    ] {
        let matches = if std::ptr::eq(s, &raw const parse) {
            "–".to_owned()
        } else {
            s.per_event.to_string()
        };
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.0} | {matches} |",
            us(s.median),
            us(s.p99),
            us(s.mean),
            1.0 / s.mean.as_secs_f64()
        );
    }
    println!();
    println!(
        "linear / indexed (median): {:.1}x; goal <= 10 us per event for all {TRIGGERS} Triggers: {}",
        us(linear.median) / us(indexed.median),
        if us(indexed.p99) <= 10.0 {
            "met (p99)"
        } else if us(indexed.median) <= 10.0 {
            "met (median)"
        } else {
            "NOT met"
        }
    );
}
