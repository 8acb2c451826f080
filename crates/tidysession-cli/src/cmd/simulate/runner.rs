//! Running the plan through the demo's routes under each policy, and counting what the store
//! did.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use axum::body::Body;
use axum::http::{header, Request};
use tidysession::store::SessionStore;
use tidysession::tooling::{CountingStore, OpCounts};
use tidysession::KeyRing;
use time::OffsetDateTime;
use tower::ServiceExt as _;

use super::jar::Jar;
use super::plan::{Plan, Sender};
use super::policy::Policy;
use super::report::{Outcome, Report};
use super::target::Target;
use crate::cmd::demo::{router_with, Users};

pub(super) async fn simulate(
    plan: &Plan,
    target: &Target,
    users: &Users,
) -> anyhow::Result<Report> {
    let mut outcomes = Vec::new();
    for policy in Policy::ALL {
        let (store, file) = target.open(policy).await?;
        let outcome = run_policy(plan, policy, store, file.as_deref(), users.clone())
            .await
            .with_context(|| format!("simulating {}", policy.title()))?;
        outcomes.push(outcome);
    }
    Ok(Report {
        plan: plan.clone(),
        store: target.describe(),
        outcomes,
    })
}

/// Adds to `into` the operations counted between two readings, `before` and then `now`.
fn add_since(into: &mut OpCounts, now: OpCounts, before: OpCounts) {
    into.loads += now.loads - before.loads;
    into.creates += now.creates - before.creates;
    into.updates += now.updates - before.updates;
    into.touches += now.touches - before.touches;
    into.renames += now.renames - before.renames;
    into.deletes += now.deletes - before.deletes;
}

async fn run_policy(
    plan: &Plan,
    policy: Policy,
    inner: Arc<dyn SessionStore>,
    sqlite_file: Option<&Path>,
    users: Users,
) -> anyhow::Result<Outcome> {
    let store = Arc::new(CountingStore::new(inner));
    let keys = KeyRing::generate(1).context("generating a key")?;
    let app = router_with(store.clone(), users, keys.clone(), policy.config(keys));
    let mut jars = vec![Jar::default(); plan.jars()];
    let mut by_traffic = [OpCounts::default(); 5];
    let every = (plan.steps.len() / 200).max(1);
    let mut samples = vec![(0, 0)];
    let started = Instant::now();
    for (i, step) in plan.steps.iter().enumerate() {
        let cookie = match &step.sender {
            Sender::Nobody => None,
            Sender::Forged(c) => Some(c.clone()),
            Sender::Jar(j) => jars[*j].header(),
        };
        let mut req = Request::builder().method(step.method).uri(&step.path);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let body = match &step.form {
            Some(f) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(f.clone())
            }
            None => Body::empty(),
        };
        let req = req.body(body).context("building a request")?;
        let before = store.counts();
        let res = app
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|never| match never {});
        add_since(
            &mut by_traffic[step.traffic.index()],
            store.counts(),
            before,
        );
        let status = res.status();
        // A bot's or a forged cookie's responses go nowhere.
        if let Sender::Jar(j) = step.sender {
            for value in res.headers().get_all(header::SET_COOKIE) {
                if let Ok(v) = value.to_str() {
                    jars[j].take(v);
                }
            }
        }
        // Every planned request is one the demo accepts; anything else is a bug worth stopping for.
        let expected = if step.method == "POST" { 303 } else { 200 };
        if status.as_u16() != expected {
            let body = axum::body::to_bytes(res.into_body(), 4096)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            bail!(
                "request {} ({} {} {}) answered {status}, expected {expected}: {}",
                i + 1,
                step.traffic.name(),
                step.method,
                step.path,
                body.trim()
            );
        }
        if step.login {
            if let Sender::Jar(j) = step.sender {
                if !jars[j].0.contains_key("id") {
                    bail!("request {}: a login set no session cookie", i + 1);
                }
            }
        }
        if (i + 1) % every == 0 || i + 1 == plan.steps.len() {
            let live = crate::cmd::maintenance(&*store)?
                .count(OffsetDateTime::now_utc())
                .await
                .context("counting sessions")?
                .live;
            samples.push(((i + 1) as u64, live));
        }
    }
    let elapsed = started.elapsed();
    let rows = samples.last().map_or(0, |s| s.1);
    let bytes = match sqlite_file {
        Some(path) => Some(sqlite_bytes(path).await?),
        None => None,
    };
    Ok(Outcome {
        policy,
        counts: store.counts(),
        by_traffic,
        rows,
        bytes,
        samples,
        elapsed,
    })
}

/// Bytes of session data in a SQLite file.
async fn sqlite_bytes(path: &Path) -> anyhow::Result<u64> {
    use sqlx::Connection as _;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let (bytes,): (i64,) =
        sqlx::query_as("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM tidysession_sessions")
            .fetch_one(&mut conn)
            .await
            .with_context(|| format!("measuring {}", path.display()))?;
    let _ = conn.close().await;
    Ok(u64::try_from(bytes).unwrap_or(0))
}
