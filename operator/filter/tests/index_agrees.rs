//! The index of `MatcherSet` never changes an answer: for generated filters of every
//! dialect and generated events (typed extensions, arrays in `data`, keys with dots,
//! absent fields),
//! `matching` returns exactly the filters a linear scan finds, each once, also after
//! filters are removed and replaced. Raise `PROPTEST_CASES` for a longer search.

use herald_filter::{CompiledFilter, Event, MatcherSet};
use proptest::prelude::*;
use serde_json::{Value, json};

const NAMES: [&str; 6] = ["type", "source", "subject", "tenant", "n", "flag"];
const TEXTS: [&str; 12] = [
    "a", "ab", "abc", "b", "ba", "1", "01", "10", "true", "TRUE", "é", "10.0.0.1",
];

fn name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&NAMES[..])
}

fn text() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&TEXTS[..])
}

fn cesql() -> impl Strategy<Value = String> {
    let atom = (name(), text(), text(), 0..3i32).prop_flat_map(|(n, v, w, i)| {
        prop::sample::select(vec![
            format!("{n} = '{v}'"),
            format!("'{v}' = {n}"),
            format!("{n} LIKE '{v}%'"),
            format!("{n} LIKE '%{v}'"),
            format!("{n} LIKE '{v}'"),
            format!("{n} LIKE '{v}_'"),
            format!("{n} IN ('{v}', '{w}')"),
            format!("{n} IN ({i}, TRUE, '{v}')"),
            format!("EXISTS {n}"),
            format!("{n} = {i}"),
            format!("{n} NOT LIKE '{v}%'"),
            format!("{n} > {i}"),
            format!("INT({n}) >= {i}"),
            format!("{i} < {n}"),
            format!("{i} = INT({n})"),
            format!("{i} = {n}"),
            format!("{n} != {i}"),
            format!("NOT EXISTS {n}"),
        ])
    });
    prop::collection::vec((atom, prop::sample::select(vec!["AND", "OR", "XOR"])), 1..4).prop_map(
        |parts| {
            let mut out = String::new();
            for (i, (atom, op)) in parts.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                    out.push_str(op);
                    out.push(' ');
                }
                out.push_str(atom);
            }
            out
        },
    )
}

fn matcher() -> impl Strategy<Value = Value> {
    (text(), any::<bool>(), 0..18usize).prop_map(|(v, b, pick)| match pick {
        0 | 1 => json!(v),
        2 => json!({"prefix": v}),
        3 => json!({"suffix": v}),
        4 => json!({"wildcard": format!("{v}*")}),
        5 => json!({"wildcard": format!("*{v}")}),
        6 => json!({"anything-but": v}),
        7 => json!({"exists": b}),
        8 => json!({"numeric": [">", 1]}),
        9 => json!(1),
        10 => json!({"prefix": {"equals-ignore-case": v}}),
        11 => json!({"anything-but": {"prefix": [v, "b"]}}),
        12 => json!({"equals-ignore-case": v}),
        13 => json!({"anything-but": {"wildcard": format!("{v}*")}}),
        14 => json!({"cidr": "10.0.0.0/8"}),
        15 => json!({"numeric": [">", 0, "<", 2]}),
        16 => json!({"suffix": {"equals-ignore-case": v}}),
        _ => json!(b),
    })
}

fn leaf() -> impl Strategy<Value = Value> {
    prop::collection::vec(matcher(), 1..3).prop_map(Value::Array)
}

fn pattern() -> impl Strategy<Value = Value> {
    // `k.m` is also the path `k` → `m`, in patterns and in events.
    let data_key = prop::sample::select(vec!["k", "m", "k.m"]);
    let data = prop_oneof![
        (data_key.clone(), leaf()).prop_map(|(k, l)| json!({ k: l })),
        (data_key.clone(), data_key, leaf()).prop_map(|(k, j, l)| json!({ k: { j: l } })),
    ];
    prop_oneof![
        (name(), leaf()).prop_map(|(n, l)| json!({ n: l })),
        data.clone().prop_map(|d| json!({ "data": d })),
        (name(), leaf(), data.clone()).prop_map(|(n, l, d)| json!({ n: l, "data": d })),
        (name(), leaf(), name(), leaf())
            .prop_map(|(n, l, m, k)| json!({"$or": [{ n: l }, { m: k }]})),
        (data.clone(), data).prop_map(|(a, b)| json!({"data": {"$or": [a, b]}})),
    ]
}

fn filter() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        (name(), text()).prop_map(|(n, v)| json!({"exact": { n: v }})),
        (name(), text()).prop_map(|(n, v)| json!({"prefix": { n: v }})),
        (name(), text()).prop_map(|(n, v)| json!({"suffix": { n: v }})),
        cesql().prop_map(|c| json!({ "cesql": c })),
        pattern().prop_map(|p| json!({ "pattern": p })),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| json!({ "all": v })),
            prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({ "any": v })),
            inner.prop_map(|f| json!({ "not": f })),
        ]
    })
}

#[derive(Debug, Clone)]
enum Ext {
    Absent,
    Str(&'static str),
    Int(i32),
    Bool(bool),
}

fn ext() -> impl Strategy<Value = Ext> {
    prop_oneof![
        Just(Ext::Absent),
        text().prop_map(Ext::Str),
        (0..12i32).prop_map(Ext::Int),
        any::<bool>().prop_map(Ext::Bool),
    ]
}

fn data_value() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        text().prop_map(|t| json!(t)),
        (0..3i32).prop_map(|i| json!(i)),
        any::<bool>().prop_map(|b| json!(b)),
        Just(Value::Null),
    ];
    scalar.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| json!({"k": a, "m": b})),
            (inner.clone(), inner).prop_map(|(a, b)| json!({"k.m": a, "m": b})),
        ]
    })
}

#[derive(Debug, Clone)]
struct Sample {
    ty: &'static str,
    source: &'static str,
    subject: Option<&'static str>,
    tenant: Ext,
    n: Ext,
    flag: Ext,
    data: Option<Value>,
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        text(),
        text(),
        prop::option::of(text()),
        (ext(), ext(), ext()),
        prop::option::of(data_value()),
    )
        .prop_map(|(ty, source, subject, (tenant, n, flag), data)| Sample {
            ty,
            source,
            subject,
            tenant,
            n,
            flag,
            data,
        })
}

fn view(s: &Sample) -> Event<'_> {
    let mut e = Event::new("1", s.source, "1.0", s.ty);
    if let Some(subject) = s.subject {
        e = e.with_subject(subject);
    }
    for (name, value) in [("tenant", &s.tenant), ("n", &s.n), ("flag", &s.flag)] {
        e = match value {
            Ext::Absent => e,
            Ext::Str(v) => e.with_extension(name, *v),
            Ext::Int(i) => e.with_extension(name, *i),
            Ext::Bool(b) => e.with_extension(name, *b),
        };
    }
    if let Some(data) = &s.data {
        e = e.with_data(data);
    }
    e
}

fn check(set: &MatcherSet<usize>, all: &[(usize, CompiledFilter)], samples: &[Sample]) {
    for s in samples {
        let event = view(s);
        let mut indexed = set.matching_keys(&event);
        indexed.sort_unstable();
        let linear: Vec<usize> = all
            .iter()
            .filter(|(_, f)| f.matches(&event))
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(indexed, linear, "event {s:?}");
        assert!(set.candidate_count(&event) >= linear.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// A `cesql` filter is compiled into simpler tests where it can; its answer stays
    /// the evaluator's.
    #[test]
    fn compiled_cesql_agrees_with_the_evaluator(
        source in cesql(),
        negate in any::<bool>(),
        samples in prop::collection::vec(sample(), 1..8),
    ) {
        let source = if negate { format!("NOT ({source})") } else { source };
        let expression = herald_filter::cesql::Expression::parse(&source).expect("generated CESQL parses");
        let Ok(filter) = CompiledFilter::from_filter(&json!({ "cesql": source })) else {
            return Ok(());
        };
        for s in &samples {
            let event = view(s);
            prop_assert_eq!(filter.matches(&event), expression.matches(&event), "{} on {:?}", source, s);
        }
    }

    #[test]
    fn the_index_agrees_with_a_linear_scan(
        filters in prop::collection::vec(filter(), 1..40),
        samples in prop::collection::vec(sample(), 1..12),
        removed in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut all: Vec<(usize, CompiledFilter)> = filters
            .iter()
            .filter_map(|f| CompiledFilter::from_filter(f).ok())
            .enumerate()
            .collect();
        let mut set = MatcherSet::new();
        for (k, f) in &all {
            set.insert(*k, f.clone());
        }
        check(&set, &all, &samples);

        // Remove some, replace one with another key's filter, and check again.
        if !all.is_empty() {
            for index in &removed {
                let at = index.index(all.len());
                let (key, _) = all[at];
                set.remove(&key);
                all.retain(|(k, _)| *k != key);
                if all.is_empty() {
                    break;
                }
            }
        }
        if let Some((key, _)) = all.first().cloned() {
            let other = all.last().map(|(_, f)| f.clone()).unwrap_or_default();
            set.insert(key, other.clone());
            all[0].1 = other;
        }
        prop_assert_eq!(set.len(), all.len());
        check(&set, &all, &samples);
    }
}
