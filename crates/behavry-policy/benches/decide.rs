//! `PolicySet::decide` with the base pack on typical tools/call inputs.

use behavry_policy::{DecisionResult, PolicySet};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

#[path = "support/inputs.rs"]
mod inputs;

fn decide(c: &mut Criterion) {
    let set = PolicySet::base_only().expect("the base pack compiles");
    let read = inputs::read_call();
    let write = inputs::write_call_2kb();
    assert_eq!(
        set.decide(&read).expect("decides").result,
        DecisionResult::Allow
    );
    assert_eq!(
        set.decide(&write).expect("decides").result,
        DecisionResult::Allow
    );

    let mut group = c.benchmark_group("decide_base_pack");
    group.bench_function("read_tool", |b| b.iter(|| set.decide(black_box(&read))));
    group.bench_function("write_tool_2kb_args", |b| {
        b.iter(|| set.decide(black_box(&write)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // A shared 2-core machine: enough samples for stable medians, short runs.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = decide
}
criterion_main!(benches);
