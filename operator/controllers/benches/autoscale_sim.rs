//! Simulation benchmark of the consumer-Deployment autoscaler: Herald's policy
//! (`herald_controllers::autoscale::policy`, driven as `autoscale/mod.rs` drives it)
//! against a KEDA-like baseline (KEDA `ScaledObject` + HPA defaults, see
//! [`scalers::Keda`]), on one JetStream work queue under four load profiles.
//!
//! Deterministic discrete-time simulation (step [`queue::STEP_MS`]): arrivals come
//! from a rate profile by fractional accumulation, no randomness. Both scalers see the
//! same queue model, per-replica throughput and pod start delay ([`queue`]).
//!
//! ```text
//! cargo bench -p herald-controllers --bench autoscale_sim               # table
//! cargo bench -p herald-controllers --bench autoscale_sim -- --plot DIR # + DIR/autoscaling-<profile>.svg
//! ```

#[path = "autoscale_sim/queue.rs"]
mod queue;
#[path = "autoscale_sim/scalers.rs"]
mod scalers;
#[path = "autoscale_sim/svg.rs"]
mod svg;

use std::f64::consts::PI;
use std::path::PathBuf;

use queue::{POD_START_MS, Queue, SERVICE_MS, STEP_MS};
use scalers::{
    HERALD_POLL_PHASE_MS, HPA_AFTER_POLL_MS, HPA_SYNC_MS, Herald, KEDA_COOLDOWN_MS, KEDA_POLL_MS,
    Keda, MAX_REPLICAS, Scaler, TARGET_PER_REPLICA, WAKE_MS, ms, to_f64,
};

/// KEDA's first poll: half a polling interval after t = 0, so its activation delay
/// for loads starting on a whole minute is the average one (15 s).
const KEDA_POLL_PHASE_MS: u64 = KEDA_POLL_MS / 2;
/// Pod start delay of the sensitivity table.
const SLOW_POD_START_MS: u64 = 10_000;
/// Points of the plotted time series: one per this many ms.
const PLOT_EVERY_MS: u64 = 1_000;

/// A load profile: arrival rate (events/s) at a time (s), over `duration_s`.
struct Profile {
    name: &'static str,
    about: &'static str,
    duration_s: u64,
    rate: fn(f64) -> f64,
}

const PROFILES: [Profile; 4] = [
    Profile {
        name: "burst",
        about: "2,000 events within 1 s at t = 60 s, then idle; 30 min",
        duration_s: 1_800,
        rate: |t| {
            if (60.0..61.0).contains(&t) {
                2_000.0
            } else {
                0.0
            }
        },
    },
    Profile {
        name: "ramp",
        about: "idle 1 min, 0 → 100/s over 10 min, 100/s for 5 min, → 0 over 5 min, idle; 40 min",
        duration_s: 2_400,
        rate: |t| match t {
            t if t < 60.0 => 0.0,
            t if t < 660.0 => 100.0 * (t - 60.0) / 600.0,
            t if t < 960.0 => 100.0,
            t if t < 1_260.0 => 100.0 * (1_260.0 - t) / 300.0,
            _ => 0.0,
        },
    },
    Profile {
        name: "sine",
        about: "idle 1 min, 50 ± 40/s (period 5 min, rising first) for 20 min, idle; 35 min",
        duration_s: 2_100,
        rate: |t| {
            if (60.0..1_260.0).contains(&t) {
                50.0 + 40.0 * (2.0 * PI * (t - 60.0) / 300.0).sin()
            } else {
                0.0
            }
        },
    },
    Profile {
        name: "idle-gaps",
        about: "20/s for 60 s every 10 min, from t = 60 s; 40 min",
        duration_s: 2_400,
        rate: |t| {
            if t >= 60.0 && (t - 60.0) % 600.0 < 60.0 {
                20.0
            } else {
                0.0
            }
        },
    },
];

/// What one run measured.
struct Outcome {
    replica_s: f64,
    p99_ms: u64,
    mean_ms: f64,
    max_replicas: usize,
    /// First event: arrival → first replica processing.
    from_zero_ms: u64,
    events: u64,
    redeliveries: u64,
    scalings: u64,
    /// (s, replicas) and (s, backlog).
    replicas: Vec<(f64, f64)>,
    backlog: Vec<(f64, f64)>,
}

fn run(profile: &Profile, scaler: &mut dyn Scaler, pod_start: u64) -> Outcome {
    let mut queue = Queue::new(pod_start);
    let mut carry = 0.0;
    let (mut replicas, mut backlog) = (Vec::new(), Vec::new());
    let end = profile.duration_s * 1_000;
    let mut now = 0;
    while now < end {
        let mid = to_f64(now + STEP_MS / 2) / 1_000.0;
        carry += (profile.rate)(mid) * to_f64(STEP_MS) / 1_000.0;
        let arrivals = whole(carry);
        carry -= to_f64(arrivals);
        queue.advance(now, arrivals);
        let desired = scaler.step(now, arrivals, &queue);
        if desired != queue.replicas() {
            queue.scale(now, desired);
        }
        queue.bill();
        if now % PLOT_EVERY_MS == 0 {
            let t = to_f64(now) / 1_000.0;
            replicas.push((t, f64::from(queue.replicas())));
            backlog.push((t, to_f64(queue.backlog())));
        }
        now += STEP_MS;
    }
    assert_eq!(
        queue.waits.len() as u64,
        queue.arrived,
        "{}: events left unprocessed at the end",
        profile.name
    );
    let mut waits = queue.waits;
    waits.sort_unstable();
    let rank = (waits.len() * 99).div_ceil(100).max(1);
    Outcome {
        replica_s: to_f64(queue.replica_ms) / 1_000.0,
        p99_ms: waits.get(rank - 1).copied().unwrap_or(0),
        mean_ms: to_f64(waits.iter().sum::<u64>()) / to_f64(waits.len().max(1) as u64),
        max_replicas: queue.max_replicas,
        from_zero_ms: queue
            .first_start
            .zip(queue.first_arrival)
            .map_or(0, |(start, arrival)| start - arrival),
        events: queue.arrived,
        redeliveries: queue.redeliveries,
        scalings: queue.scalings,
        replicas,
        backlog,
    }
}

/// ⌊x⌋ of a non-negative accumulator.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // x in [0, 2^53)
fn whole(x: f64) -> u64 {
    x.max(0.0).floor() as u64
}

fn secs(ms: u64) -> String {
    format!("{:.2} s", to_f64(ms) / 1_000.0)
}

/// A parameter duration: `30 s`, `7.5 s`.
fn short(ms: u64) -> String {
    format!("{} s", to_f64(ms) / 1_000.0)
}

fn plot_dir() -> Option<PathBuf> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--plot" {
            return args.next().map(PathBuf::from);
        }
        if let Some(dir) = arg.strip_prefix("--plot=") {
            return Some(PathBuf::from(dir));
        }
    }
    None
}

fn plot(dir: &std::path::Path, profile: &Profile, herald: &Outcome, keda: &Outcome) {
    use svg::Series;
    let series = [
        Series {
            label: "Herald replicas",
            color: "#1f77b4",
            dashed: false,
            right_axis: false,
            points: &herald.replicas,
        },
        Series {
            label: "KEDA-like replicas",
            color: "#d62728",
            dashed: false,
            right_axis: false,
            points: &keda.replicas,
        },
        Series {
            label: "Herald backlog",
            color: "#6baed6",
            dashed: true,
            right_axis: true,
            points: &herald.backlog,
        },
        Series {
            label: "KEDA-like backlog",
            color: "#fc9272",
            dashed: true,
            right_axis: true,
            points: &keda.backlog,
        },
    ];
    let title = format!("autoscaling: {} ({})", profile.name, profile.about);
    let chart = svg::chart(
        &title,
        to_f64(profile.duration_s),
        f64::from(MAX_REPLICAS),
        &series,
    );
    let path = dir.join(format!("autoscaling-{}.svg", profile.name));
    std::fs::write(&path, chart).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    println!("wrote {}", path.display());
}

fn main() {
    let plots = plot_dir();
    if let Some(dir) = &plots {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    }
    let mut results = Vec::new();
    for profile in &PROFILES {
        let herald = run(profile, &mut Herald::new(), POD_START_MS);
        let keda = run(profile, &mut Keda::new(KEDA_POLL_PHASE_MS), POD_START_MS);
        if let Some(dir) = &plots {
            plot(dir, profile, &herald, &keda);
        }
        results.push((profile, herald, keda));
    }

    println!();
    println!(
        "| profile | Herald replica-seconds | KEDA-like replica-seconds | cost ratio (Herald/KEDA) | Herald p99 wait | KEDA-like p99 wait | Herald max replicas | KEDA max replicas |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (profile, h, k) in &results {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {} | {} | {} | {} |",
            profile.name,
            h.replica_s,
            k.replica_s,
            h.replica_s / k.replica_s,
            secs(h.p99_ms),
            secs(k.p99_ms),
            h.max_replicas,
            k.max_replicas
        );
    }
    println!();
    println!(
        "| profile | events | scale from zero, first event: Herald | KEDA-like | mean wait: Herald | KEDA-like | redeliveries (scale-down naks): Herald | KEDA-like | replica changes: Herald | KEDA-like |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (profile, h, k) in &results {
        println!(
            "| {} | {} | {} | {} | {:.2} s | {:.2} s | {} | {} | {} | {} |",
            profile.name,
            h.events,
            secs(h.from_zero_ms),
            secs(k.from_zero_ms),
            h.mean_ms / 1_000.0,
            k.mean_ms / 1_000.0,
            h.redeliveries,
            k.redeliveries,
            h.scalings,
            k.scalings
        );
    }
    phase_sweep(&results);
    slow_pods();
    parameters();
    verdict(&results);
}

/// The KEDA-like baseline's result depends on where its 30 s polls fall relative to
/// the load; show its best case over poll phases too.
fn phase_sweep(results: &[(&Profile, Outcome, Outcome)]) {
    println!();
    println!(
        "KEDA-like baseline over poll phases 0, 5, …, 25 s (HPA sync always 7.5 s after a poll):"
    );
    println!();
    println!(
        "| profile | KEDA-like replica-seconds (min … max) | KEDA-like p99 wait (min … max) | Herald lower on both in every phase |"
    );
    println!("|---|---:|---:|---|");
    for (profile, h, _) in results {
        let runs: Vec<Outcome> = (0..KEDA_POLL_MS / 5_000)
            .map(|i| run(profile, &mut Keda::new(i * 5_000), POD_START_MS))
            .collect();
        let cost = |f: fn(f64, f64) -> f64, init| runs.iter().map(|o| o.replica_s).fold(init, f);
        let p99 = runs.iter().map(|o| o.p99_ms);
        let (p99_min, p99_max) = (p99.clone().min().unwrap_or(0), p99.max().unwrap_or(0));
        let wins = runs
            .iter()
            .all(|k| h.replica_s < k.replica_s && h.p99_ms < k.p99_ms);
        println!(
            "| {} | {:.0} … {:.0} | {} … {} | {} |",
            profile.name,
            cost(f64::min, f64::INFINITY),
            cost(f64::max, 0.0),
            secs(p99_min),
            secs(p99_max),
            if wins { "yes" } else { "no" }
        );
    }
}

/// The same comparison with slower pods.
fn slow_pods() {
    println!();
    println!(
        "Pod start {} instead of {} (everything else as above):",
        short(SLOW_POD_START_MS),
        short(POD_START_MS)
    );
    println!();
    println!(
        "| profile | Herald replica-seconds | KEDA-like replica-seconds | Herald p99 wait | KEDA-like p99 wait | Herald lower on both |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    for profile in &PROFILES {
        let h = run(profile, &mut Herald::new(), SLOW_POD_START_MS);
        let k = run(
            profile,
            &mut Keda::new(KEDA_POLL_PHASE_MS),
            SLOW_POD_START_MS,
        );
        let wins = h.replica_s < k.replica_s && h.p99_ms < k.p99_ms;
        println!(
            "| {} | {:.0} | {:.0} | {} | {} | {} |",
            profile.name,
            h.replica_s,
            k.replica_s,
            secs(h.p99_ms),
            secs(k.p99_ms),
            if wins { "yes" } else { "no" }
        );
    }
}

fn parameters() {
    let herald = Herald::new();
    let p = herald.policy();
    println!();
    println!("Model parameters:");
    println!(
        "- queue: one durable consumer, FIFO; step {STEP_MS} ms; deterministic arrivals (fractional accumulation of the rate at mid-step)"
    );
    println!(
        "- replica: {} events/s, one at a time ({SERVICE_MS} ms each); starts taking events {} after it is requested; removed replicas stop at once (not-ready first, then newest), an in-flight event goes back to the queue head and is redelivered",
        1_000 / SERVICE_MS,
        short(POD_START_MS)
    );
    println!(
        "- cost: replica-seconds from the moment a replica is requested until it is removed; wait: arrival → start of the processing that acked the event; p99 by nearest rank"
    );
    println!(
        "- Herald: policy.rs with ScalingSpec::default() + maxReplicas {MAX_REPLICAS}, targetBacklogPerReplica {TARGET_PER_REPLICA} → min {}, max {}, target {}, activation {}, pollInterval {}, cooldown {}, scaleUp window {}, scaleDown window {}, maxStep up/down {}/{}; polls at {} + k·pollInterval; at zero, activate() {WAKE_MS} ms after an event arrives",
        p.min,
        p.max,
        p.target_per_replica,
        p.activation,
        short(ms(p.poll_interval)),
        short(ms(p.cooldown)),
        short(ms(p.up_window)),
        short(ms(p.down_window)),
        p.up_step.map_or("none".to_owned(), |n| n.to_string()),
        p.down_step.map_or("none".to_owned(), |n| n.to_string()),
        short(HERALD_POLL_PHASE_MS)
    );
    println!(
        "- KEDA-like: metric pending + ack_pending, AverageValue {TARGET_PER_REPLICA}; KEDA polls every {} from t = {} (0 → 1 when backlog > 0; → 0 when no backlog at any poll for cooldownPeriod {}); HPA sync every {} ({} after each poll, fresh metric, not folded into the poll): desired = ⌈backlog / {TARGET_PER_REPLICA}⌉, tolerance 10 %, scale-up immediate (default rate limit NOT modelled), scale-down stabilization {} (highest recommendation), clamp [1, {MAX_REPLICAS}]",
        short(KEDA_POLL_MS),
        short(KEDA_POLL_PHASE_MS),
        short(KEDA_COOLDOWN_MS),
        short(HPA_SYNC_MS),
        short(HPA_AFTER_POLL_MS),
        short(scalers::HPA_DOWN_WINDOW_MS)
    );
    println!("- profiles:");
    for profile in &PROFILES {
        println!("  - {}: {}", profile.name, profile.about);
    }
}

fn verdict(results: &[(&Profile, Outcome, Outcome)]) {
    println!();
    for (profile, h, k) in results {
        let cost = if h.replica_s < k.replica_s {
            "lower"
        } else {
            "NOT lower"
        };
        let wait = if h.p99_ms < k.p99_ms {
            "lower"
        } else {
            "NOT lower"
        };
        println!(
            "{}: Herald replica-seconds {cost}, p99 wait {wait}",
            profile.name
        );
    }
}
