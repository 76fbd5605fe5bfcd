use crate::{call, source};
use behavry_policy::{BASE_PACK_ID, DecisionResult, EmbeddedEngine, PolicyEngine, PolicyError};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set A has one policy, set B two; a decision mixing them, or naming
/// neither, would mean a torn swap.
fn set_a() -> Vec<behavry_policy::PolicySource> {
    vec![source(
        "a1",
        "package behavry.policies.one\nallow contains \"from A\" if true\n",
    )]
}

fn set_b() -> Vec<behavry_policy::PolicySource> {
    vec![
        source(
            "b1",
            "package behavry.policies.one\nallow contains \"from B\" if true\n",
        ),
        source(
            "b2",
            "package behavry.policies.two\nallow contains \"also from B\" if true\n",
        ),
    ]
}

fn which(d: &behavry_policy::Decision) -> &'static str {
    let ids: BTreeSet<&str> = d.rules.iter().map(|r| r.policy_id.as_str()).collect();
    match ids.into_iter().collect::<Vec<_>>().as_slice() {
        ["a1"] => "A",
        ["b1", "b2"] => "B",
        other => panic!("a decision from neither set: {other:?} {d:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_swaps_atomically_while_decisions_run() {
    let engine = Arc::new(EmbeddedEngine::new().unwrap());
    engine.install("t1", set_a(), false).await.unwrap();

    let installed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let decider = {
        let (engine, installed, stop) = (engine.clone(), installed.clone(), stop.clone());
        tokio::spawn(async move {
            let input = call("read_file", json!({"path": "/tmp/a"}));
            let mut seen = Vec::new();
            let mut after_install = 0;
            while !stop.load(Ordering::Acquire) || after_install < 200 {
                // Read the flag before deciding: if the final install had
                // returned by then, the decision must come from B.
                let must_be_b = installed.load(Ordering::Acquire);
                let d = engine.decide("t1", &input).await.unwrap();
                assert_eq!(d.result, DecisionResult::Allow);
                let set = which(&d);
                if must_be_b {
                    assert_eq!(set, "B", "a decision after install used the old set");
                    after_install += 1;
                }
                seen.push(set);
                tokio::task::yield_now().await;
            }
            seen
        })
    };

    // Swap back and forth while the decider runs, ending on B.
    for round in 0..10 {
        let sources = if round % 2 == 0 { set_b() } else { set_a() };
        engine.install("t1", sources, false).await.unwrap();
    }
    engine.install("t1", set_b(), false).await.unwrap();
    installed.store(true, Ordering::Release);
    stop.store(true, Ordering::Release);

    let seen = decider.await.unwrap();
    assert!(seen.contains(&"B"));
    assert!(seen.len() > 200, "the decider hardly ran: {}", seen.len());
    assert_eq!(seen.last(), Some(&"B"));
}

#[tokio::test]
async fn tenants_without_policies_get_the_base_pack() {
    let engine = EmbeddedEngine::new().unwrap();
    assert_eq!(engine.kind(), "embedded");
    let d = engine
        .decide("nobody", &call("read_file", json!({"path": "/tmp/a"})))
        .await
        .unwrap();
    assert_eq!(d.result, DecisionResult::Allow);
    assert_eq!(d.policy_id.as_deref(), Some(BASE_PACK_ID));

    // Tenants are separate: one tenant's deny is not another's.
    engine
        .install(
            "strict",
            vec![source(
                "s",
                "package behavry.policies.strict\ndeny := true\n",
            )],
            true,
        )
        .await
        .unwrap();
    let input = call("read_file", json!({"path": "/tmp/a"}));
    assert_eq!(
        engine.decide("strict", &input).await.unwrap().result,
        DecisionResult::Deny
    );
    assert_eq!(
        engine.decide("other", &input).await.unwrap().result,
        DecisionResult::Allow
    );

    engine.remove("strict").await;
    assert_eq!(
        engine.decide("strict", &input).await.unwrap().result,
        DecisionResult::Allow
    );
}

#[tokio::test]
async fn a_failed_install_keeps_the_previous_policies() {
    let engine: Box<dyn PolicyEngine> = Box::new(EmbeddedEngine::new().unwrap());
    engine.install("t", set_a(), false).await.unwrap();
    let err = engine
        .install(
            "t",
            vec![source("bad", "package behavry.policies.bad\nallow if {\n")],
            false,
        )
        .await
        .unwrap_err();
    let PolicyError::Compile(errors) = &err else {
        panic!("{err}")
    };
    assert_eq!(errors[0].policy_id.as_deref(), Some("bad"));
    let d = engine
        .decide("t", &call("read_file", json!({})))
        .await
        .unwrap();
    assert_eq!(which(&d), "A");
}
