//! The cleanup engine ([`tidysession::cleanup`]): how it sizes, paces and checks its
//! batches: on the memory store with the clock paused (a batch "takes" a set time per row,
//! so every figure is exact), and against the real servers, with two cleaners at once, rows
//! held by another transaction and rows written already expired behind the cursor.

use std::sync::{Arc, Mutex};

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tidysession::cleanup::{worth_sweeping, Cleanup, Order};
use tidysession::store::Maintenance as _;
use tidysession::store::{
    ExpiredBatch, MemoryStore, Record, RecordCounts, SessionId, SessionStore, StoreError,
};
use time::{Duration as Span, OffsetDateTime};
use tokio::time::Instant;

/// One `delete_expired` call as the store saw it.
#[derive(Debug, Clone, Copy)]
struct Call {
    from: Option<OffsetDateTime>,
    limit: u32,
    took: Duration,
    deleted: u64,
}

/// A store in front of another that takes `per_row` (of tokio's clock) per row a batch asks
/// for, records every `delete_expired` call, and can write records already expired behind
/// the cursor at one call and release rows another transaction holds when the final pass
/// starts.
struct Watched {
    inner: Arc<dyn SessionStore>,
    per_row: Duration,
    calls: Mutex<Vec<Call>>,
    /// At this call (counted from 0), write `behind.1` records expiring at `behind.2`.
    behind: Option<(usize, u32, OffsetDateTime)>,
    /// Rows another transaction holds, rolled back when the final pass starts.
    held: tokio::sync::Mutex<Option<sqlx::Transaction<'static, sqlx::Postgres>>>,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Watched {
    fn new(inner: Arc<dyn SessionStore>, per_row: Duration) -> Self {
        Self {
            inner,
            per_row,
            calls: Mutex::new(Vec::new()),
            behind: None,
            held: tokio::sync::Mutex::new(None),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

crate::util::forward_request_path!(Watched);

#[async_trait]
impl tidysession::store::Maintenance for Watched {
    async fn delete_expired(
        &self,
        from: Option<OffsetDateTime>,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<ExpiredBatch, StoreError> {
        let n = self.calls.lock().unwrap().len();
        if let Some((at, count, expires_at)) = self.behind {
            if n == at {
                seed(&*self.inner, count, expires_at, Span::ZERO).await;
            }
        }
        let final_pass_starts = n > 0 && from.is_none();
        if final_pass_starts {
            if let Some(held) = self.held.lock().await.take() {
                held.rollback().await.unwrap();
            }
        }
        let started = Instant::now();
        tokio::time::sleep(self.per_row * limit).await;
        let batch = self
            .inner
            .maintenance()
            .unwrap()
            .delete_expired(from, now, limit)
            .await?;
        self.calls.lock().unwrap().push(Call {
            from,
            limit,
            took: started.elapsed(),
            deleted: batch.deleted,
        });
        Ok(batch)
    }
    async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        self.inner.maintenance().unwrap().count(now).await
    }
}

/// Writes `count` records, the first expiring at `first`, each next `step` later.
async fn seed(store: &dyn SessionStore, count: u32, first: OffsetDateTime, step: Span) {
    let format = store.id_format();
    for i in 0..count {
        let expires_at = first + step * i;
        let record = Record {
            data: json!({"i": i}).as_object().unwrap().clone(),
            created_at: expires_at - Span::hours(1),
            expires_at,
        };
        let key = SessionId::generate_as(format).unwrap().storage_key();
        store.create(&key, &record).await.unwrap();
    }
}

/// A memory store with `expired` records (a second apart, the last a minute ago) and 5 live.
async fn memory(expired: u32) -> (Arc<dyn SessionStore>, OffsetDateTime) {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::default());
    let now = OffsetDateTime::now_utc();
    let first = now - Span::minutes(1) - Span::seconds(i64::from(expired));
    seed(&*store, expired, first, Span::seconds(1)).await;
    seed(&*store, 5, now + Span::hours(1), Span::seconds(1)).await;
    (store, now)
}

fn plan(first: u32, batch_ms: u64) -> Cleanup {
    Cleanup::new()
        .with_first_batch(first)
        .with_batch_time(Duration::from_millis(batch_ms))
}

async fn counts(store: &dyn SessionStore, at: OffsetDateTime) -> (u64, u64) {
    let c = store.maintenance().unwrap().count(at).await.unwrap();
    (c.live, c.expired)
}

#[tokio::test(start_paused = true)]
async fn a_batch_that_runs_long_shrinks_the_next_to_fit_at_once() {
    let (inner, now) = memory(3000).await;
    let store = Watched::new(inner, Duration::from_millis(1));
    // 1,000 rows at 1 ms a row: 1 s, fifty times the 20 ms a batch should take.
    let done = plan(1000, 20).run(&store, now).await.unwrap();
    let calls = store.calls();
    assert_eq!(calls[0].limit, 1000);
    assert!(
        calls[1..].iter().all(|c| c.limit == 20),
        "every later batch fits 20 ms: {calls:?}"
    );
    assert!(calls[1..]
        .iter()
        .all(|c| c.took <= Duration::from_millis(20)));
    assert_eq!(done.longest, Duration::from_millis(1000));
    assert_eq!((done.smallest, done.largest), (20, 1000));
    assert_eq!(done.deleted, 3000);
    assert_eq!(counts(&store, now).await, (5, 0));
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_that_runs_short_grows_the_next_by_an_eighth_at_most() {
    let (inner, now) = memory(2000).await;
    let store = Watched::new(inner, Duration::from_millis(1));
    plan(10, 50).run(&store, now).await.unwrap();
    let calls = store.calls();
    let main: Vec<u32> = calls
        .iter()
        .take_while(|c| c.deleted == u64::from(c.limit))
        .map(|c| c.limit)
        .collect();
    assert_eq!(main[..6], [10, 12, 14, 16, 18, 21], "{main:?}");
    assert!(main.windows(2).all(|w| w[1] <= w[0] + w[0].div_ceil(8)));
    assert!(main.iter().all(|&n| n <= 50), "never past 50 ms: {main:?}");
    assert_eq!(main.last(), Some(&50), "{main:?}");
}

#[tokio::test(start_paused = true)]
async fn clear_pauses_as_long_as_each_batch_took() {
    let (inner, now) = memory(500).await;
    let store = Watched::new(inner, Duration::from_millis(1));
    let started = Instant::now();
    let done = plan(100, 1000).run(&store, now).await.unwrap();
    let busy: Duration = store.calls().iter().map(|c| c.took).sum();
    assert!(busy >= Duration::from_millis(500));
    assert_eq!(done.paused, busy);
    assert!(started.elapsed() >= busy * 2);
}

#[tokio::test(start_paused = true)]
async fn max_rate_still_caps_rows_per_second() {
    let (inner, now) = memory(500).await;
    let store = Watched::new(inner, Duration::ZERO);
    let started = Instant::now();
    let plan = plan(1000, 50).with_max_rate(100);
    let done = plan.run(&store, now).await.unwrap();
    assert_eq!(done.largest, 100, "a batch holds a second's worth at most");
    assert_eq!(done.deleted, 500);
    assert!(started.elapsed() >= Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn the_final_pass_finds_rows_written_behind_the_cursor() {
    let (inner, now) = memory(1000).await;
    let mut store = Watched::new(inner, Duration::from_millis(1));
    // At the third batch, 7 records appear that expired before all the others.
    store.behind = Some((2, 7, now - Span::days(1)));
    let done = plan(100, 1000).run(&store, now).await.unwrap();
    assert_eq!(done.deleted, 1007);
    assert_eq!(done.final_deleted, 7);
    assert_eq!(counts(&store, now).await, (5, 0));
    // The walk itself never went back: each batch started at the cursor before it.
    let calls = store.calls();
    let walk = &calls[..(done.batches - done.final_batches) as usize];
    assert!(walk[1..].iter().all(|c| c.from.is_some()), "{walk:?}");
    assert!(walk.windows(2).all(|w| w[0].from <= w[1].from));
}

/// A run stopped at a limit says where its walk stopped; a run started there goes on from it
/// and deletes the rest.
#[tokio::test(start_paused = true)]
async fn a_run_stopped_short_hands_its_cursor_to_the_next() {
    let (inner, now) = memory(500).await;
    let store = Watched::new(inner, Duration::ZERO);
    let first = plan(100, 20)
        .with_largest_batch(100)
        .with_max_batches(2)
        .run(&store, now)
        .await
        .unwrap();
    assert!(first.more_left);
    assert_eq!(first.deleted, 200);
    assert!(first.cursor.is_some());
    let second = plan(100, 20)
        .with_final_pass(false)
        .with_start_at(first.cursor)
        .run(&store, now)
        .await
        .unwrap();
    assert_eq!(
        (second.deleted, second.more_left, second.cursor),
        (300, false, None)
    );
    assert_eq!(store.calls()[2].from, first.cursor);
    assert_eq!(counts(&store, now).await, (5, 0));
}

// --- against the real servers ------------------------------------------------------------

/// 1,500 expired records (two seconds apart) and 50 live ones; then two cleaners at once,
/// one of which sees 20 records appear at its second batch that expired before all the
/// others. (Not later: the other cleaner may take so much that the first one's walk is over
/// by then, and rows written behind a final pass are not this run's to find.) On PostgreSQL
/// another transaction also holds 30 expired rows in the middle of the range until the first
/// cleaner's final pass starts (SKIP LOCKED steps past them; on MySQL/MariaDB a batch would
/// wait for them instead). Nothing expired may be left.
#[allow(dead_code)] // used with the server stores' features
async fn two_cleaners_leave_nothing_behind(store: Arc<dyn SessionStore>, hold: Option<&str>) {
    store.maintenance().unwrap().migrate().await.unwrap();
    let now = OffsetDateTime::now_utc();
    let first = now - Span::hours(2);
    seed(&*store, 1500, first, Span::seconds(2)).await;
    seed(&*store, 50, now + Span::hours(1), Span::seconds(1)).await;
    let mut a = Watched::new(store.clone(), Duration::ZERO);
    a.behind = Some((1, 20, first - Span::days(1)));
    if let Some(sql) = hold {
        let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        let held = sqlx::query(sql).fetch_all(&mut *tx).await.unwrap();
        assert_eq!(held.len(), 30);
        *a.held.get_mut() = Some(tx);
    }
    let plan = plan(100, 50);
    let (done_a, done_b) = tokio::join!(
        plan.run(&a, now),
        plan.run(store.maintenance().unwrap(), now)
    );
    let (done_a, done_b) = (done_a.unwrap(), done_b.unwrap());
    assert_eq!(counts(&*store, now).await, (50, 0));
    assert_eq!(done_a.deleted + done_b.deleted, 1520);
    assert!(a.held.lock().await.is_none(), "the final pass started");
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_cleaners_leave_nothing_behind_on_postgres() {
    let (store, guard) = crate::util::servers::postgres().await;
    let hold = format!(
        "SELECT id FROM \"{}\".tidysession_sessions WHERE expires_at < {}
         ORDER BY expires_at OFFSET 700 LIMIT 30 FOR UPDATE",
        guard.name,
        now_millis()
    );
    two_cleaners_leave_nothing_behind(Arc::new(store), Some(&hold)).await;
}

#[cfg(all(feature = "django", feature = "postgres"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_cleaners_leave_nothing_behind_on_a_django_postgres_table() {
    let (store, guard) = crate::util::servers::django_postgres().await;
    let hold = format!(
        "SELECT session_key FROM \"{}\" WHERE expire_date < now()
         ORDER BY expire_date OFFSET 700 LIMIT 30 FOR UPDATE",
        guard.name
    );
    two_cleaners_leave_nothing_behind(Arc::new(store), Some(&hold)).await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_cleaners_leave_nothing_behind_on_mysql() {
    let (store, _guard) = crate::util::servers::mysql().await;
    two_cleaners_leave_nothing_behind(Arc::new(store), None).await;
}

#[cfg(all(feature = "django", feature = "mysql"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_cleaners_leave_nothing_behind_on_a_django_mysql_table() {
    let (store, _guard) = crate::util::servers::django_mysql().await;
    two_cleaners_leave_nothing_behind(Arc::new(store), None).await;
}

#[allow(dead_code)] // used with the server stores' features
fn now_millis() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[test]
fn a_sweep_pays_from_a_quarter_of_the_records_expired() {
    let counts = |live, expired| RecordCounts { live, expired };
    assert!(worth_sweeping(counts(300, 100)));
    assert!(worth_sweeping(counts(0, 1)));
    assert!(!worth_sweeping(counts(301, 100)));
    assert!(!worth_sweeping(counts(10, 0)));
    assert!(!worth_sweeping(counts(0, 0)));
}

#[test]
fn a_store_without_a_sweep_is_walked_through_the_index() {
    let store = MemoryStore::default();
    let most_expired = RecordCounts {
        live: 1,
        expired: 9,
    };
    assert_eq!(Order::for_backlog(&store, most_expired), Order::Index);
}

#[cfg(feature = "postgres")]
mod held_rows {
    use super::*;
    use tidysession::store::{PostgresStore, Sweep, SweepPosition, SweptBatch};

    /// A PostgreSQL store whose sweep rolls back `held` (rows another transaction locks)
    /// when the final pass starts: the first time a range is swept again.
    #[derive(Debug)]
    struct ReleasedAtFinalPass {
        inner: PostgresStore,
        swept: Mutex<Vec<SweepPosition>>,
        held: tokio::sync::Mutex<Option<sqlx::Transaction<'static, sqlx::Postgres>>>,
    }

    #[async_trait]
    impl Sweep for ReleasedAtFinalPass {
        async fn start(&self) -> Result<SweepPosition, StoreError> {
            self.inner.sweep().unwrap().start().await
        }
        async fn sweep_expired(
            &self,
            from: &SweepPosition,
            now: OffsetDateTime,
            span: u32,
        ) -> Result<SweptBatch, StoreError> {
            let again = {
                let mut swept = self.swept.lock().unwrap();
                let again = swept.contains(from);
                swept.push(from.clone());
                again
            };
            if again {
                if let Some(held) = self.held.lock().await.take() {
                    held.rollback().await.unwrap();
                }
            }
            self.inner
                .sweep()
                .unwrap()
                .sweep_expired(from, now, span)
                .await
        }
    }

    crate::util::forward_request_path!(ReleasedAtFinalPass);

    #[async_trait]
    impl tidysession::store::Maintenance for ReleasedAtFinalPass {
        async fn delete_expired(
            &self,
            from: Option<OffsetDateTime>,
            now: OffsetDateTime,
            limit: u32,
        ) -> Result<ExpiredBatch, StoreError> {
            self.inner.delete_expired(from, now, limit).await
        }
        async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
            self.inner.count(now).await
        }
        fn sweep(&self) -> Option<&dyn Sweep> {
            Some(self)
        }
    }

    /// A sweep steps past expired rows another transaction holds; once they are free, the
    /// final pass sweeps their range again and deletes them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_sweep_takes_held_rows_in_its_final_pass_on_postgres() {
        let (store, guard) = crate::util::servers::postgres().await;
        let now = OffsetDateTime::now_utc();
        seed(&store, 300, now - Span::hours(1), Span::seconds(1)).await;
        seed(&store, 20, now + Span::hours(1), Span::seconds(1)).await;
        // The first rows in storage order, which the sweep meets in its first batches.
        let hold = format!(
            "SELECT id FROM \"{}\".tidysession_sessions WHERE expires_at < {}
             ORDER BY ctid LIMIT 5 FOR UPDATE",
            guard.name,
            now_millis()
        );
        let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        assert_eq!(
            sqlx::query(&hold)
                .execute(&mut *tx)
                .await
                .unwrap()
                .rows_affected(),
            5
        );
        let sweep = ReleasedAtFinalPass {
            inner: store,
            swept: Mutex::new(Vec::new()),
            held: tokio::sync::Mutex::new(Some(tx)),
        };
        let plan = plan(20, 20).with_order(Order::Storage);
        let done = plan.run(&sweep, now).await.unwrap();
        assert_eq!(done.order, Order::Storage);
        assert!(sweep.held.lock().await.is_none(), "the final pass started");
        assert_eq!(done.deleted, 300);
        assert!(done.final_batches >= 1, "{done:?}");
        assert_eq!(done.final_deleted, 5, "{done:?}");
        assert_eq!(counts(&sweep, now).await, (20, 0));
    }
}

#[allow(dead_code)] // used with the server stores' features
fn postgres_url() -> String {
    crate::util::servers::postgres_url()
}
