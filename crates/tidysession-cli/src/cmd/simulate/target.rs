//! Where each policy's fresh, empty store comes from (`--store`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use tidysession::store::{Maintenance as _, SessionStore};
use time::OffsetDateTime;

use super::policy::Policy;
use crate::cmd::open_migrated_store;

/// Where each policy's fresh store comes from.
#[derive(Debug)]
pub(super) enum Target {
    /// One SQLite file per policy in this directory (kept while the value lives).
    TempSqlite(tempfile::TempDir),
    /// One SQLite file per policy next to this path.
    SqliteFiles(PathBuf),
    SqliteMemory,
    Memory,
    /// A server store; each policy gets its own namespace under this URL.
    Server(String),
}

impl Target {
    pub(super) fn parse(url: Option<&str>) -> anyhow::Result<Self> {
        let Some(url) = url else {
            let dir = tempfile::Builder::new()
                .prefix("tidysession-simulate-")
                .tempdir()
                .context("making a temporary directory for the SQLite files")?;
            return Ok(Target::TempSqlite(dir));
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            bail!(
                "unsupported store URL {:?}: expected sqlite://PATH, sqlite://:memory:, memory://, \
                 postgres://…, mysql://… or redis://…",
                tidysession::tooling::redact_url(url)
            );
        };
        Ok(match scheme {
            "memory" if rest.is_empty() => Target::Memory,
            "sqlite" if rest == ":memory:" => Target::SqliteMemory,
            "sqlite" if !rest.is_empty() => {
                let path = PathBuf::from(rest);
                for policy in Policy::ALL {
                    let file = sqlite_file(&path, policy);
                    if file.exists() {
                        bail!(
                            "{} already exists: simulate needs a fresh database per policy; \
                             remove it or choose another --store path",
                            file.display()
                        );
                    }
                }
                Target::SqliteFiles(path)
            }
            "postgres" | "postgresql" | "mysql" | "redis" | "redis+cluster" if !rest.is_empty() => {
                Target::Server(url.to_owned())
            }
            _ => bail!(
                "unsupported store URL {:?}: simulate takes sqlite://PATH, sqlite://:memory:, \
                 memory://, or a PostgreSQL, MySQL or Redis URL (each policy then gets a fresh \
                 schema=, table= or prefix= of its own)",
                tidysession::tooling::redact_url(url)
            ),
        })
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Target::TempSqlite(_) => {
                "SQLite, a fresh file per policy in a temporary directory".into()
            }
            Target::SqliteFiles(p) => {
                format!("SQLite, one file per policy next to {}", p.display())
            }
            Target::SqliteMemory => "SQLite in memory, a fresh database per policy".into(),
            Target::Memory => "memory, a fresh store per policy".into(),
            Target::Server(url) => format!(
                "{}, a fresh namespace per policy",
                tidysession::tooling::redact_url(url)
            ),
        }
    }

    /// A fresh, migrated, empty store for `policy`, and the SQLite file behind it if any.
    pub(super) async fn open(
        &self,
        policy: Policy,
    ) -> anyhow::Result<(Arc<dyn SessionStore>, Option<PathBuf>)> {
        let sqlite = |path: PathBuf| async move {
            let store = tidysession::store::SqliteStore::open(&path.to_string_lossy())
                .await
                .with_context(|| format!("opening {}", path.display()))?;
            store
                .migrate()
                .await
                .with_context(|| format!("migrating {}", path.display()))?;
            anyhow::Ok((Arc::new(store) as Arc<dyn SessionStore>, Some(path)))
        };
        let (store, file) = match self {
            Target::TempSqlite(dir) => {
                sqlite(dir.path().join(format!("{}.db", policy.slug()))).await?
            }
            Target::SqliteFiles(path) => sqlite(sqlite_file(path, policy)).await?,
            Target::SqliteMemory => (open_migrated_store("sqlite://:memory:").await?, None),
            Target::Memory => (
                Arc::new(tidysession::store::MemoryStore::default()) as Arc<dyn SessionStore>,
                None,
            ),
            Target::Server(url) => (open_migrated_store(&namespaced(url, policy)).await?, None),
        };
        let counts = crate::cmd::maintenance(&*store)?
            .count(OffsetDateTime::now_utc())
            .await
            .context("counting the store's sessions")?;
        if counts.live + counts.expired > 0 {
            bail!(
                "the store for {} already holds {} sessions: simulate needs an empty store per \
                 policy (a fresh schema=, table= or prefix=)",
                policy.title(),
                counts.live + counts.expired
            );
        }
        Ok((store, file))
    }
}

/// `sessions.db` → `sessions-default.db`.
pub(super) fn sqlite_file(path: &Path, policy: Policy) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "simulate".into(), |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{}.{}", policy.slug(), ext.to_string_lossy()),
        None => format!("{stem}-{}", policy.slug()),
    };
    path.with_file_name(name)
}

/// The server URL with this policy's own schema (PostgreSQL), table (MySQL) or key prefix
/// (Redis): the one given plus the policy's name, or `tidysession_sim_<policy>`.
pub(super) fn namespaced(url: &str, policy: Policy) -> String {
    let param = match url.split_once("://").map(|(s, _)| s) {
        Some("postgres" | "postgresql") => "schema",
        Some("mysql") => "table",
        _ => "prefix",
    };
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut given = None;
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if k == param => given = Some(v),
            _ => kept.push(pair),
        }
    }
    let value = match (param, given) {
        ("prefix", Some(p)) => format!("{p}{}:", policy.slug()),
        ("prefix", None) => format!("tidysession_sim:{}:", policy.slug()),
        (_, Some(name)) => format!("{name}_{}", policy.slug()),
        (_, None) => format!("tidysession_sim_{}", policy.slug()),
    };
    let own = format!("{param}={value}");
    kept.push(&own);
    format!("{base}?{}", kept.join("&"))
}
