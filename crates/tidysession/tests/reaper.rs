//! The reaper: bounded runs, one process at a time (two store instances on one PostgreSQL
//! schema or MariaDB table stand for two processes), surviving a store outage and a
//! panicking store, and stopping on shutdown.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use serde_json::json;
use tidysession::reaper::{Reaper, ReaperReport};
use tidysession::store::{
    ExclusiveGuard, ExpiredBatch, MemoryStore, RecordCounts, SessionStore, StoreError,
};
use time::{Duration, OffsetDateTime};

use crate::conformance::{fresh, key_for, record};
use tidysession::store::Maintenance as _;

/// Expired and live records, created through `store`.
async fn seed(store: &dyn SessionStore, expired: u32, live: u32) {
    let t = OffsetDateTime::now_utc();
    for i in 0..expired {
        let exp = t - Duration::minutes(60) + Duration::milliseconds(i64::from(i));
        let r = record(json!({ "i": i }), exp - Duration::hours(1), exp);
        store.create(&key_for(store), &r).await.unwrap();
    }
    for _ in 0..live {
        store
            .create(&key_for(store), &fresh(json!({"live": true})))
            .await
            .unwrap();
    }
}

async fn counts(store: &dyn SessionStore) -> RecordCounts {
    store
        .maintenance()
        .unwrap()
        .count(OffsetDateTime::now_utc())
        .await
        .unwrap()
}

/// Waits until `done` holds, polling; fails the test after `limit`.
async fn until<F: std::future::Future<Output = bool>>(
    limit: StdDuration,
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

/// Every report a reaper made.
#[derive(Clone, Default)]
struct Reports(Arc<Mutex<Vec<ReaperReport>>>);

impl Reports {
    fn attach(&self, reaper: Reaper) -> Reaper {
        let reports = self.0.clone();
        reaper.with_report_callback(move |r| reports.lock().unwrap().push(r.clone()))
    }
    fn all(&self) -> Vec<ReaperReport> {
        self.0.lock().unwrap().clone()
    }
    fn deleted(&self) -> u64 {
        self.all().iter().map(|r| r.deleted).sum()
    }
}

/// Shared between the "processes": how many `delete_expired` calls are running right now,
/// and the most there ever were.
#[derive(Debug, Default)]
struct Overlap {
    active: AtomicUsize,
    most: AtomicUsize,
}

/// A store that reports its `delete_expired` calls to an [`Overlap`] and makes each take a
/// few milliseconds, so that two runs at once could not go unnoticed. `unlocked` hands out a
/// fresh lock every time: a reaper without mutual exclusion, for the control case.
#[derive(Debug)]
struct Watched<S> {
    inner: S,
    overlap: Arc<Overlap>,
    unlocked: bool,
}

crate::util::forward_request_path!(Watched<S>, S);

#[async_trait]
impl<S: SessionStore> tidysession::store::Maintenance for Watched<S> {
    async fn delete_expired(
        &self,
        from: Option<OffsetDateTime>,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<ExpiredBatch, StoreError> {
        let active = self.overlap.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.overlap.most.fetch_max(active, Ordering::SeqCst);
        tokio::time::sleep(StdDuration::from_millis(5)).await;
        let result = self
            .inner
            .maintenance()
            .unwrap()
            .delete_expired(from, now, limit)
            .await;
        self.overlap.active.fetch_sub(1, Ordering::SeqCst);
        result
    }
    async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        self.inner.maintenance().unwrap().count(now).await
    }
    async fn try_exclusive(&self, name: &str) -> Result<Option<ExclusiveGuard>, StoreError> {
        if self.unlocked {
            static N: AtomicU64 = AtomicU64::new(0);
            let unique = format!("{name}.{}", N.fetch_add(1, Ordering::SeqCst));
            return Ok(ExclusiveGuard::in_process(&unique));
        }
        self.inner.maintenance().unwrap().try_exclusive(name).await
    }
}

fn quick(store: impl SessionStore) -> Reaper {
    Reaper::new(store)
        .with_interval(StdDuration::from_millis(10))
        .with_jitter(0.5)
        .with_first_run_after(StdDuration::ZERO)
        .with_batch_size(50)
        .with_max_batches(4)
        .with_backoff(StdDuration::from_millis(20), StdDuration::from_millis(200))
}

/// Two reapers, each on its own store instance (its own connections, as in two processes),
/// clean one table: their deletes never overlap, they had to take turns, all expired
/// records go and the live ones stay.
async fn two_reapers_take_turns<S: SessionStore>(a: S, b: S, unlocked: bool) -> usize {
    const EXPIRED: u32 = 1200;
    const LIVE: u32 = 20;
    seed(&a, EXPIRED, LIVE).await;
    let overlap = Arc::new(Overlap::default());
    let watched = |inner| Watched {
        inner,
        overlap: overlap.clone(),
        unlocked,
    };
    let (a, b) = (Arc::new(watched(a)), Arc::new(watched(b)));
    let (ra, rb) = (Reports::default(), Reports::default());
    let ha = ra.attach(quick(a.clone())).spawn().unwrap();
    let hb = rb.attach(quick(b.clone())).spawn().unwrap();
    // Reports, not the table: the last run must have finished and reported too.
    until(
        StdDuration::from_secs(30),
        "all expired records deleted",
        || async { ra.deleted() + rb.deleted() == u64::from(EXPIRED) },
    )
    .await;
    for h in [ha, hb] {
        tokio::time::timeout(StdDuration::from_secs(5), h.shutdown())
            .await
            .expect("shut down within 5 s");
    }
    assert_eq!(
        counts(&*b).await,
        RecordCounts {
            live: LIVE.into(),
            expired: 0
        }
    );
    assert_eq!(ra.deleted() + rb.deleted(), u64::from(EXPIRED));
    let errors: Vec<_> = ra
        .all()
        .into_iter()
        .chain(rb.all())
        .filter_map(|r| r.error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    if !unlocked {
        let skipped = |r: &Reports| r.all().iter().filter(|r| r.skipped_because_locked).count();
        assert!(
            skipped(&ra) + skipped(&rb) > 0,
            "the reapers never met the other's lock: the test proved nothing"
        );
    }
    overlap.most.load(Ordering::SeqCst)
}

#[tokio::test]
async fn without_the_lock_the_watch_does_see_overlapping_deletes() {
    // The control: the same two reapers with the lock bypassed do delete at the same time,
    // so the tests below would notice if the lock failed.
    let store = Arc::new(MemoryStore::default());
    let most = two_reapers_take_turns(store.clone(), store, true).await;
    assert!(most >= 2, "most concurrent deletes: {most}");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn two_processes_on_postgres_never_delete_at_the_same_time() {
    use tidysession::store::PostgresStore;
    let (a, guard) = crate::util::servers::postgres().await;
    let b = PostgresStore::connect(&crate::util::servers::postgres_url())
        .await
        .unwrap()
        .with_schema(&guard.name)
        .unwrap();
    assert_eq!(two_reapers_take_turns(a, b, false).await, 1);
}

#[cfg(feature = "mysql")]
#[tokio::test]
async fn two_processes_on_mariadb_never_delete_at_the_same_time() {
    use tidysession::store::MySqlStore;
    let (a, guard) = crate::util::servers::mysql().await;
    let b = MySqlStore::connect(&crate::util::servers::mysql_url())
        .await
        .unwrap()
        .with_table(&guard.name)
        .unwrap();
    assert_eq!(two_reapers_take_turns(a, b, false).await, 1);
}

#[cfg(all(feature = "django", feature = "postgres"))]
#[tokio::test]
async fn two_processes_on_a_django_table_in_postgres_never_delete_at_the_same_time() {
    use tidysession::store::DjangoStore;
    let (a, guard) = crate::util::servers::django_postgres().await;
    let b = DjangoStore::connect(
        &crate::util::servers::postgres_url(),
        crate::util::servers::django_secrets(),
    )
    .await
    .unwrap()
    .with_table(&guard.name)
    .unwrap();
    let held = a.try_exclusive("x").await.unwrap().expect("free");
    assert!(b.try_exclusive("x").await.unwrap().is_none(), "held by a");
    held.release().await;
    assert_eq!(two_reapers_take_turns(a, b, false).await, 1);
}

#[cfg(all(feature = "django", feature = "mysql"))]
#[tokio::test]
async fn two_processes_on_a_django_table_in_mariadb_never_delete_at_the_same_time() {
    use tidysession::store::DjangoStore;
    let (a, guard) = crate::util::servers::django_mysql().await;
    let b = DjangoStore::connect(
        &crate::util::servers::mysql_url(),
        crate::util::servers::django_secrets(),
    )
    .await
    .unwrap()
    .with_table(&guard.name)
    .unwrap();
    let held = a.try_exclusive("x").await.unwrap().expect("free");
    assert!(b.try_exclusive("x").await.unwrap().is_none(), "held by a");
    held.release().await;
    assert_eq!(two_reapers_take_turns(a, b, false).await, 1);
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_locks_exclude_other_connections_and_free_on_release_or_drop() {
    use tidysession::store::PostgresStore;
    let (a, guard) = crate::util::servers::postgres().await;
    let b = PostgresStore::connect(&crate::util::servers::postgres_url())
        .await
        .unwrap()
        .with_schema(&guard.name)
        .unwrap();
    let mut held = a.try_exclusive("x").await.unwrap().expect("free");
    assert!(held.still_held().await);
    assert!(b.try_exclusive("x").await.unwrap().is_none(), "held by a");
    assert!(
        a.try_exclusive("x").await.unwrap().is_none(),
        "even for a's other connections"
    );
    let other = b
        .try_exclusive("y")
        .await
        .unwrap()
        .expect("another name is free");
    held.release().await;
    let again = b.try_exclusive("x").await.unwrap().expect("released");
    drop(again); // the connection closes; the server frees the lock shortly after
    until(
        StdDuration::from_secs(5),
        "lock freed by dropping",
        || async { a.try_exclusive("x").await.unwrap().is_some() },
    )
    .await;
    other.release().await;
}

#[cfg(feature = "mysql")]
#[tokio::test]
async fn mariadb_locks_exclude_other_connections_and_free_on_release_or_drop() {
    use tidysession::store::MySqlStore;
    let (a, guard) = crate::util::servers::mysql().await;
    let b = MySqlStore::connect(&crate::util::servers::mysql_url())
        .await
        .unwrap()
        .with_table(&guard.name)
        .unwrap();
    let mut held = a.try_exclusive("x").await.unwrap().expect("free");
    assert!(held.still_held().await);
    assert!(b.try_exclusive("x").await.unwrap().is_none(), "held by a");
    let other = b
        .try_exclusive("y")
        .await
        .unwrap()
        .expect("another name is free");
    held.release().await;
    let again = b.try_exclusive("x").await.unwrap().expect("released");
    drop(again);
    until(
        StdDuration::from_secs(5),
        "lock freed by dropping",
        || async { a.try_exclusive("x").await.unwrap().is_some() },
    )
    .await;
    other.release().await;
}

/// The store goes away (the proxy cuts every connection and refuses new ones) while the
/// reaper runs: runs fail and back off, the task lives on, and once the store is back it
/// finishes the job.
async fn survives_an_outage<S: SessionStore>(store: S, proxy: &crate::util::proxy::Proxy) {
    seed(&store, 300, 5).await;
    let store = Arc::new(store);
    proxy.cut();
    let reports = Reports::default();
    let handle = reports.attach(quick(store.clone())).spawn().unwrap();
    until(StdDuration::from_secs(20), "two failed runs", || async {
        reports.all().iter().filter(|r| r.error.is_some()).count() >= 2
    })
    .await;
    assert_eq!(reports.deleted(), 0);
    assert!(!handle.is_finished(), "the reaper lives on");
    proxy.restore();
    until(
        StdDuration::from_secs(20),
        "all expired records deleted",
        || async { reports.deleted() == 300 },
    )
    .await;
    let last = reports.all().last().cloned().unwrap();
    assert!(last.error.is_none(), "{last:?}");
    assert_eq!(
        counts(&*store).await,
        RecordCounts {
            live: 5,
            expired: 0
        }
    );
    tokio::time::timeout(StdDuration::from_secs(5), handle.shutdown())
        .await
        .expect("shut down within 5 s");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_reaper_survives_a_postgres_outage() {
    use crate::util::proxy::{server_of, via, Proxy};
    let url = crate::util::servers::postgres_url();
    let proxy = Proxy::start(server_of(&url, 5432)).await;
    let (store, _guard) = crate::util::servers::postgres_at(&via(&url, proxy.addr)).await;
    survives_an_outage(store, &proxy).await;
}

#[cfg(feature = "mysql")]
#[tokio::test]
async fn the_reaper_survives_a_mariadb_outage() {
    use crate::util::proxy::{server_of, via, Proxy};
    let url = crate::util::servers::mysql_url();
    let proxy = Proxy::start(server_of(&url, 3306)).await;
    let (store, _guard) = crate::util::servers::mysql_at(&via(&url, proxy.addr)).await;
    survives_an_outage(store, &proxy).await;
}

#[tokio::test]
async fn runs_are_bounded_and_report_what_they_did() {
    let store = Arc::new(MemoryStore::default());
    seed(&*store, 25, 2).await;
    let reaper = Reaper::new(store.clone())
        .with_lock_name("bounded_test")
        .with_batch_size(10)
        .with_max_batches(2);
    let first = reaper.run_once().await;
    assert_eq!(
        (first.deleted, first.batches, first.more_left),
        (20, 2, true)
    );
    let second = reaper.run_once().await;
    assert_eq!(
        (second.deleted, second.batches, second.more_left),
        (5, 1, false)
    );
    assert_eq!(
        counts(&*store).await,
        RecordCounts {
            live: 2,
            expired: 0
        }
    );

    // Someone else holds the lock: the run does nothing.
    seed(&*store, 3, 0).await;
    let held = store.try_exclusive("bounded_test").await.unwrap().unwrap();
    let skipped = reaper.run_once().await;
    assert!(skipped.skipped_because_locked);
    assert_eq!((skipped.deleted, skipped.batches), (0, 0));
    drop(held);
    assert_eq!(reaper.run_once().await.deleted, 3);

    // No batch starts after the run's time is up.
    seed(&*store, 3, 0).await;
    let timed = Reaper::new(store.clone())
        .with_lock_name("bounded_test")
        .with_max_duration(StdDuration::ZERO)
        .run_once()
        .await;
    assert_eq!((timed.batches, timed.more_left), (0, true));
}

/// A store that answers `delete_expired` slowly, or panics once.
#[derive(Debug, Default)]
struct Troubled {
    inner: MemoryStore,
    /// How long each `delete_expired` takes.
    pause: StdDuration,
    panic_once: AtomicBool,
    expires_itself: bool,
}

crate::util::forward_request_path!(Troubled);

#[async_trait]
impl tidysession::store::Maintenance for Troubled {
    async fn delete_expired(
        &self,
        from: Option<OffsetDateTime>,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<ExpiredBatch, StoreError> {
        tokio::time::sleep(self.pause).await;
        if self.panic_once.swap(false, Ordering::SeqCst) {
            panic!("a store bug");
        }
        self.inner.delete_expired(from, now, limit).await
    }
    async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        self.inner.count(now).await
    }
    fn removes_expired_itself(&self) -> bool {
        self.expires_itself
    }
}

#[tokio::test]
async fn shutdown_is_bounded_and_lets_the_current_batch_finish() {
    // A batch that never ends: cut short after the grace.
    let store = Arc::new(Troubled {
        pause: StdDuration::from_secs(600),
        ..Troubled::default()
    });
    let handle = Reaper::new(store.clone())
        .with_lock_name("shutdown_test")
        .with_shutdown_grace(StdDuration::from_millis(100))
        .with_first_run_after(StdDuration::ZERO)
        .spawn()
        .unwrap();
    until(
        StdDuration::from_secs(5),
        "the run holds the lock",
        || async {
            store
                .maintenance()
                .unwrap()
                .try_exclusive("shutdown_test")
                .await
                .unwrap()
                .is_none()
        },
    )
    .await;
    let start = Instant::now();
    tokio::time::timeout(StdDuration::from_secs(2), handle.shutdown())
        .await
        .expect("shut down within 2 s");
    eprintln!("shutdown mid-run took {:?}", start.elapsed());
    assert!(store
        .maintenance()
        .unwrap()
        .try_exclusive("shutdown_test")
        .await
        .unwrap()
        .is_some());

    // Batches of 200 ms: shutting down mid-run lets the current one finish and report.
    let store = Arc::new(Troubled {
        pause: StdDuration::from_millis(200),
        ..Troubled::default()
    });
    seed(&*store, 100, 0).await;
    let handle = Reaper::new(store.clone())
        .with_lock_name("graceful_test")
        .with_batch_size(10)
        .with_first_run_after(StdDuration::ZERO)
        .spawn()
        .unwrap();
    let latest = handle.reports();
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    let start = Instant::now();
    tokio::time::timeout(StdDuration::from_secs(2), handle.shutdown())
        .await
        .expect("shut down within 2 s");
    // At most the batch under way (200 ms), not the eight or so left (1.6 s).
    assert!(
        start.elapsed() < StdDuration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    let last = latest.borrow().clone();
    assert!(last.error.is_none(), "{last:?}");
    assert!(
        last.more_left && (1..10).contains(&last.batches),
        "{last:?}"
    );
    assert_eq!(last.deleted, 10 * last.batches);
    assert_eq!(counts(&*store).await.expired, 100 - last.deleted);

    // Between runs.
    let idle = Reaper::new(MemoryStore::default())
        .with_interval(StdDuration::from_secs(3600))
        .spawn()
        .unwrap();
    tokio::time::timeout(StdDuration::from_secs(2), idle.shutdown())
        .await
        .expect("shut down within 2 s");
}

#[tokio::test]
async fn a_panicking_store_fails_one_run_not_the_reaper() {
    let store = Arc::new(Troubled {
        panic_once: AtomicBool::new(true),
        ..Troubled::default()
    });
    seed(&*store, 7, 1).await;
    let reports = Reports::default();
    let handle = reports
        .attach(quick(store.clone()).with_lock_name("panic_test"))
        .spawn()
        .unwrap();
    until(
        StdDuration::from_secs(10),
        "a run after the panic",
        || async { reports.deleted() == 7 },
    )
    .await;
    let all = reports.all();
    assert_eq!(all[0].error.as_deref(), Some("the run panicked"));
    assert_eq!(
        counts(&*store).await,
        RecordCounts {
            live: 1,
            expired: 0
        }
    );
    tokio::time::timeout(StdDuration::from_secs(2), handle.shutdown())
        .await
        .expect("shut down within 2 s");
}

#[tokio::test]
async fn stores_that_expire_records_themselves_get_one_report_and_an_idle_reaper() {
    let store = Troubled {
        expires_itself: true,
        ..Troubled::default()
    };
    let reports = Reports::default();
    let handle = reports.attach(quick(store)).spawn().unwrap();
    let mut latest = handle.reports();
    tokio::time::timeout(
        StdDuration::from_secs(5),
        latest.wait_for(|r| r.store_expires_itself),
    )
    .await
    .expect("reported")
    .unwrap();
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(reports.all().len(), 1, "one report, then idle");
    tokio::time::timeout(StdDuration::from_secs(2), handle.shutdown())
        .await
        .expect("shut down within 2 s");
}

/// A store whose `delete_expired` takes a set time (of tokio's clock) per record it may
/// delete, 1 ms at first and 10 µs from call `cheap_from` on, and notes every call's cursor
/// and limit.
#[derive(Debug, Default)]
struct PerRecord {
    inner: MemoryStore,
    cheap_from: usize,
    calls: Mutex<Vec<(Option<OffsetDateTime>, u32)>>,
}

impl PerRecord {
    fn limits(&self) -> Vec<u32> {
        self.calls.lock().unwrap().iter().map(|c| c.1).collect()
    }
}

crate::util::forward_request_path!(PerRecord);

#[async_trait]
impl tidysession::store::Maintenance for PerRecord {
    async fn delete_expired(
        &self,
        from: Option<OffsetDateTime>,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<ExpiredBatch, StoreError> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            calls.push((from, limit));
            calls.len() - 1
        };
        let per_record = if call >= self.cheap_from {
            StdDuration::from_micros(10)
        } else {
            StdDuration::from_millis(1)
        };
        tokio::time::sleep(per_record * limit).await;
        self.inner.delete_expired(from, now, limit).await
    }
    async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        self.inner.count(now).await
    }
}

/// The first batch has `batch_size` records; at 1 ms a record it takes a second, fifty
/// times the 20 ms a batch should take, so the next ones hold 20. Once records cost 10 µs,
/// full batches grow back by an eighth at a time, up to `batch_size` and no further. (With
/// fixed-size batches every limit would be 1000.)
#[tokio::test(start_paused = true)]
async fn the_reaper_sizes_its_batches_by_the_time_target() {
    let store = Arc::new(PerRecord {
        cheap_from: 4,
        ..PerRecord::default()
    });
    seed(&*store, 15_000, 3).await;
    let report = Reaper::new(store.clone())
        .with_lock_name("sizing_test")
        .with_batch_size(1000)
        .with_max_batches(40)
        .with_max_duration(StdDuration::from_secs(3600))
        .run_once()
        .await;
    assert!(report.error.is_none(), "{report:?}");
    let limits = store.limits();
    assert_eq!(limits[..4], [1000, 20, 20, 20], "{limits:?}");
    let growing = &limits[4..];
    assert_eq!(growing[..4], [20, 23, 26, 30], "{limits:?}");
    assert!(
        growing
            .windows(2)
            .all(|w| w[0] <= w[1] && w[1] <= w[0] + w[0].div_ceil(8)),
        "{limits:?}"
    );
    assert_eq!(limits.last(), Some(&1000), "back to batch_size: {limits:?}");
    assert!(limits.iter().all(|&n| n <= 1000), "{limits:?}");
    assert_eq!(report.batches, limits.len() as u64);
    assert_eq!((report.smallest_batch, report.largest_batch), (20, 1000));
    assert_eq!(report.longest_batch, StdDuration::from_secs(1));
    // Paced: a pause as long as each batch took.
    assert!(
        report.paused >= StdDuration::from_millis(1060),
        "{report:?}"
    );
}

/// A run that stops at a limit leaves its cursor to the next, which goes on from there
/// instead of from the beginning; a run that reaches the end leaves none.
#[tokio::test(start_paused = true)]
async fn the_next_run_goes_on_where_the_last_stopped_short() {
    let store = Arc::new(PerRecord {
        cheap_from: 0,
        ..PerRecord::default()
    });
    seed(&*store, 25, 2).await;
    let reaper = Reaper::new(store.clone())
        .with_lock_name("cursor_test")
        .with_batch_size(10)
        .with_max_batches(2);
    let first = reaper.run_once().await;
    assert_eq!((first.deleted, first.more_left), (20, true));
    let second = reaper.run_once().await;
    assert_eq!((second.deleted, second.more_left), (5, false));
    seed(&*store, 3, 0).await;
    assert_eq!(reaper.run_once().await.deleted, 3);
    let froms: Vec<_> = store.calls.lock().unwrap().iter().map(|c| c.0).collect();
    assert_eq!(froms.len(), 4, "{froms:?}");
    assert!(froms[0].is_none() && froms[1].is_some());
    assert!(froms[2] >= froms[1], "the second run went on: {froms:?}");
    assert!(
        froms[3].is_none(),
        "after the end, from the beginning: {froms:?}"
    );
}
