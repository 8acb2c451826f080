//! tidysession's integration tests, in one binary.
//!
//! - `cleanup`: the cleanup engine's batch sizes, pacing and final pass, on the memory store
//!   under a paused clock and on the servers with two cleaners at once.
//! - `conformance`: the store contract, written once; `stores` plugs each store into it.
//! - `layer`: the decision table again through the real layer, counting store I/O.
//! - `cookie_tier`: anonymous sessions sealed in the cookie (I10), promotion, key rotation.
//! - `concurrency`: concurrent requests through the layer on every store (lost updates,
//!   resurrection).
//! - `auth`: login state through the real layers, on every store with a user index.
//! - `cached`: the in-process cache, and how stale it may be.
//! - `django`: the Django codec against the installed Django (`scripts/django-env.sh`).
//! - `django_companion`: one login across a running Django app and the `django_companion`
//!   example, through HTTP.
//! - `django_store`: `DjangoStore` and real Django sharing one `django_session` table.
//! - `django_users`: `DjangoUsers` over Django's `auth_user` on SQLite and MySQL/MariaDB.
//! - `failure`: server-backed stores that go away and come back.
//! - `metrics`: what the layer emits, through a debugging recorder.
//! - `reaper`: the background cleanup task: one process at a time, outages, shutdown.
//! - `sweep`: deleting expired records in storage order, on PostgreSQL and MySQL/MariaDB.
//! - `sqlite`, `postgres`, `mysql`, `redis`: what each store holds at rest, and its own features
//!   (the server-backed ones need the servers `scripts/services.sh` starts).
//! - `util`: the request harness.

#![allow(unreachable_pub, missing_docs)]

mod conformance;
mod util;

mod auth;
#[cfg(feature = "cached")]
mod cached;
mod cleanup;
mod concurrency;
mod cookie_tier;
#[cfg(feature = "django")]
mod django;
#[cfg(all(feature = "django", feature = "postgres", feature = "axum"))]
mod django_companion;
#[cfg(all(feature = "django", feature = "sqlite"))]
mod django_store;
#[cfg(all(feature = "django", feature = "sqlite"))]
mod django_users;
mod docs;
mod failure;
mod layer;
mod metrics;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
mod reaper;
#[cfg(feature = "redis")]
mod redis;
mod sqlite;
mod stores;
mod sweep;
