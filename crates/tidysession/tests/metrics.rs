//! The metrics the layer emits, read back through a debugging recorder installed for this
//! thread only (a current-thread runtime keeps every await on it), so other tests running at
//! the same time cannot move the counts.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration as StdDuration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tidysession::store::MemoryStore;
use tidysession::{KeyRing, SessionConfig};
use time::Duration;

use crate::util::Harness;

/// A metric: its name and its sorted labels.
type MetricKey = (String, Vec<(String, String)>);

/// The recorder's values so far: its snapshots report what changed since the last one, so
/// this adds them up.
struct Tally {
    snapshotter: Snapshotter,
    /// (name, sorted labels) → counter total, or number of histogram values.
    totals: RefCell<HashMap<MetricKey, u64>>,
}

impl Tally {
    fn new(snapshotter: Snapshotter) -> Self {
        Self {
            snapshotter,
            totals: RefCell::default(),
        }
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let mut totals = self.totals.borrow_mut();
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort_unstable();
            let n = match value {
                DebugValue::Counter(n) => n,
                DebugValue::Histogram(values) => values.len() as u64,
                DebugValue::Gauge(_) => continue,
            };
            *totals.entry((key.name().to_owned(), labels)).or_default() += n;
        }
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        want.sort_unstable();
        totals.get(&(name.to_owned(), want)).copied().unwrap_or(0)
    }
}

fn counter(tally: &Tally, name: &str, labels: &[(&str, &str)]) -> u64 {
    tally.get(name, labels)
}

/// How many latencies the histogram holds for `op`.
fn timings(tally: &Tally, op: &str) -> u64 {
    tally.get("tidysession_store_duration_seconds", &[("op", op)])
}

fn ops(tally: &Tally, op: &str, outcome: &str) -> u64 {
    tally.get(
        "tidysession_store_operations_total",
        &[("op", op), ("outcome", outcome)],
    )
}

#[test]
fn counters_move_for_each_store_operation_and_the_cookie_tier() {
    let recorder = DebuggingRecorder::new();
    let tally = Tally::new(recorder.snapshotter());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            // Idle 3 s with a 10 s window: a read is due for a touch after a second.
            let config = SessionConfig::default()
                .with_keys(KeyRing::generate(1).unwrap())
                .with_cookie_budget(500)
                .with_idle_timeout(Duration::seconds(3))
                .with_touch_window(Duration::seconds(10));
            let h = Harness::new(MemoryStore::default(), config);
            let s = &tally;

            // An anonymous write is sealed; no store call.
            let small = h.get("/write?k=a&v=1", None).await.cookie();
            assert!(small.contains('.'), "sealed: {small}");
            assert_eq!(counter(s, "tidysession_sealed_total", &[]), 1);
            assert_eq!(ops(s, "create", "ok"), 0);

            // Outgrowing the cookie promotes it: one create.
            let big = "x".repeat(600);
            let r = h.get(&format!("/write?k=big&v={big}"), Some(&small)).await;
            let cookie = r.cookie();
            assert_eq!(counter(s, "tidysession_promotions_total", &[]), 1);
            assert_eq!(ops(s, "create", "ok"), 1);

            // A write to the stored session: a load and an update.
            h.get("/write?k=b&v=2", Some(&cookie)).await;
            assert_eq!((ops(s, "load", "ok"), ops(s, "update", "ok")), (1, 1));

            // A read once the touch is due.
            tokio::time::sleep(StdDuration::from_millis(1100)).await;
            h.get("/read?k=b", Some(&cookie)).await;
            assert_eq!(ops(s, "touch", "ok"), 1);

            // Cycling the id: a rename.
            let cycled = h.get("/cycle", Some(&cookie)).await.cookie();
            assert_eq!(ops(s, "rename", "ok"), 1);

            // The old id is gone now; a write through it finds nothing.
            h.get("/read?k=b", Some(&cookie)).await;
            assert_eq!(ops(s, "load", "gone"), 1);

            // Flushing deletes; flushing again finds nothing to delete.
            h.get("/flush", Some(&cycled)).await;
            assert_eq!(ops(s, "delete", "ok"), 1);

            // Sealed cookies that do not open, by reason.
            let mut forged = small.clone().into_bytes();
            let last = forged.len() - 2;
            forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
            h.get("/read?k=a", Some(&String::from_utf8(forged).unwrap()))
                .await;
            h.get("/read?k=a", Some("id=1.a")).await;
            h.get(
                "/read?k=a",
                Some("id=77.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            )
            .await;
            let rejected = |reason| {
                counter(
                    s,
                    "tidysession_sealed_rejected_total",
                    &[("reason", reason)],
                )
            };
            assert_eq!(rejected("forged"), 1);
            assert_eq!(rejected("malformed"), 1);
            assert_eq!(rejected("unknown_key"), 1);

            // Every store call was timed, and nothing failed.
            for op in ["load", "create", "update", "touch", "rename", "delete"] {
                assert!(timings(s, op) >= 1, "{op} timed");
                assert_eq!(ops(s, op, "error"), 0, "{op} errors");
            }
        });
    });
}

#[test]
fn store_failures_count_as_errors() {
    let recorder = DebuggingRecorder::new();
    let tally = Tally::new(recorder.snapshotter());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let h = Harness::new(
                crate::util::Altered::failing_loads(MemoryStore::default()),
                crate::util::server_tier(),
            );
            let cookie = format!(
                "id={}",
                tidysession::store::SessionId::generate().unwrap().as_str()
            );
            h.get("/read?k=a", Some(&cookie)).await;
            assert_eq!(ops(&tally, "load", "error"), 1);
        });
    });
}
