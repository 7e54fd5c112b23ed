//! What each client records: operations and attempts completed inside the measurement
//! window, latency histograms (HDR, microseconds), and errors by status.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::time::Instant;

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, 3 significant digits.
const MAX_MICROS: u64 = 600_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

/// The phases of a run: clients start when it is made, are measured from `measure_from`
/// until `end`, and start nothing new after `end`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub measure_from: Instant,
    pub end: Instant,
}

impl Window {
    pub fn new(warmup: Duration, duration: Duration) -> Self {
        let start = Instant::now();
        Window {
            measure_from: start + warmup,
            end: start + warmup + duration,
        }
    }

    pub fn contains(&self, at: Instant) -> bool {
        at >= self.measure_from && at < self.end
    }

    pub fn running(&self) -> bool {
        Instant::now() < self.end
    }

    pub fn measured_seconds(&self) -> f64 {
        (self.end - self.measure_from).as_secs_f64()
    }
}

/// One client's counters; merged into the run's at the end.
#[derive(Debug)]
pub struct Recorder {
    window: Window,
    /// Completed operations (a whole cycle, a successful read-modify-write, a grant).
    pub ops: u64,
    /// Attempts (an acquire, an `If-Match` PATCH, an INSERT), successful or not.
    pub attempts: u64,
    /// Retries that are part of the workload (412 in read-modify-write, a lost race in the
    /// hot floor): counted, not errors.
    pub retries: u64,
    pub hists: BTreeMap<&'static str, Histogram<u64>>,
    pub errors: BTreeMap<String, u64>,
}

impl Recorder {
    pub fn new(window: Window) -> Self {
        Recorder {
            window,
            ops: 0,
            attempts: 0,
            retries: 0,
            hists: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    pub fn window(&self) -> Window {
        self.window
    }

    /// Records `ended - started` under `name` if the operation ended inside the window.
    pub fn latency(&mut self, name: &'static str, started: Instant, ended: Instant) {
        if self.window.contains(ended) {
            let micros = (ended - started).as_micros().min(u128::from(MAX_MICROS)) as u64;
            self.hists
                .entry(name)
                .or_insert_with(histogram)
                .saturating_record(micros.max(1));
        }
    }

    pub fn op(&mut self, at: Instant) {
        if self.window.contains(at) {
            self.ops += 1;
        }
    }

    pub fn attempt(&mut self, at: Instant) {
        if self.window.contains(at) {
            self.attempts += 1;
        }
    }

    pub fn retry(&mut self, at: Instant) {
        if self.window.contains(at) {
            self.retries += 1;
        }
    }

    /// Errors are counted whenever they happen (warm-up and drain included): none is
    /// expected, so every one is worth seeing.
    pub fn error(&mut self, what: impl Into<String>) {
        *self.errors.entry(what.into()).or_insert(0) += 1;
    }

    pub fn merge(&mut self, other: Recorder) {
        self.ops += other.ops;
        self.attempts += other.attempts;
        self.retries += other.retries;
        for (name, h) in other.hists {
            match self.hists.get_mut(name) {
                Some(mine) => mine.add(&h).expect("same histogram bounds"),
                None => {
                    self.hists.insert(name, h);
                }
            }
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_insert(0) += v;
        }
    }

    /// The run's figures as JSON: rates per measured second, latencies in milliseconds.
    pub fn summary(&self) -> Value {
        let secs = self.window.measured_seconds();
        let latency: serde_json::Map<String, Value> = self
            .hists
            .iter()
            .map(|(name, h)| ((*name).to_string(), latency_json(h)))
            .collect();
        json!({
            "measured_seconds": secs,
            "ops": self.ops,
            "attempts": self.attempts,
            "retries": self.retries,
            "ops_per_s": self.ops as f64 / secs,
            "attempts_per_s": self.attempts as f64 / secs,
            "latency_ms": latency,
            "errors": self.errors,
        })
    }
}

/// Microseconds as milliseconds (exact to the microsecond).
fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

pub fn latency_json(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "mean": (h.mean()).round() / 1000.0,
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
    })
}
