//! Latency distribution of `PolicySet::decide` with the base pack: 100,000
//! decisions per input, one at a time, reporting percentiles in µs. Criterion
//! reports means and confidence intervals; the gateway's budget is a p99.

use behavry_policy::PolicySet;
use serde_json::Value as Json;
use std::hint::black_box;
use std::time::Instant;

#[path = "support/inputs.rs"]
mod inputs;

const RUNS: usize = 100_000;
const WARM_UP: usize = 2_000;

fn measure(set: &PolicySet, name: &str, input: &Json) {
    for _ in 0..WARM_UP {
        black_box(set.decide(input).expect("decides"));
    }
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        black_box(set.decide(black_box(input)).expect("decides"));
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let index = ((samples.len() as f64 * q) as usize).min(samples.len() - 1);
        samples[index].as_secs_f64() * 1e6
    };
    let max = samples[samples.len() - 1].as_secs_f64() * 1e6;
    println!(
        "{name:<24} n={RUNS}  p50 {:>7.1} µs  p90 {:>7.1} µs  p99 {:>7.1} µs  max {:>8.1} µs",
        at(0.50),
        at(0.90),
        at(0.99),
        max
    );
}

fn main() {
    // `cargo bench` passes flags such as --bench; this runner takes none.
    let set = PolicySet::base_only().expect("the base pack compiles");
    measure(&set, "read_tool", &inputs::read_call());
    measure(&set, "write_tool_2kb_args", &inputs::write_call_2kb());
}
