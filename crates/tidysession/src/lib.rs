//! Sessions for tower and axum that never grow a huge session table.
//!
//! [`SessionLayer`] gives every request a lazy [`Session`]. Nothing is loaded until a handler
//! asks, only changed keys are written, expiry is refreshed by a cheap *touch* at most once per
//! window, empty sessions and bad cookies never create records, and concurrent requests never
//! lose each other's writes or bring a logged-out session back. Anonymous visitors' data is
//! sealed into their cookie ([`Anonymous::InCookie`], the default), so the store holds only
//! logged-in sessions; [`auth`] adds login state on top.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use tidysession::{store::{SessionStore, SqliteStore}, Session, SessionLayer};
//!
//! async fn add_to_cart(session: Session) -> Result<String, tidysession::SessionError> {
//!     let mut cart: Vec<String> = session.get("cart").await?.unwrap_or_default();
//!     cart.push("book".into());
//!     session.insert("cart", &cart).await?;
//!     Ok(format!("{} items", cart.len()))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::open("sessions.db").await?;
//! store.migrate().await?;
//! let app: Router = Router::new()
//!     .route("/cart/add", get(add_to_cart))
//!     .layer(SessionLayer::new(store));
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! | feature | what it adds | default |
//! |---|---|---|
//! | `sqlite` | [`store::SqliteStore`], embedded SQLite | yes |
//! | `memory` | [`store::MemoryStore`], in-process | yes |
//! | `axum` | [`Session`] as an axum extractor, [`SessionError`] as a response | yes |
//! | `postgres` | `store::PostgresStore`, PostgreSQL (`jsonb`, per-key saves) | no |
//! | `mysql` | `store::MySqlStore`, MariaDB (tested on 10.11) and MySQL 8 | no |
//! | `redis` | `store::RedisStore`, Redis and Redis Cluster | no |
//! | `cached` | `store::CachedStore`, an in-process cache in front of any store | no |
//! | `django` | `django`: Django's signing and session formats, byte for byte | no |
//!
//! # Operations
//!
//! [`reaper::Reaper`] deletes expired sessions in the background, in short batches, one process
//! at a time, with the [`cleanup`] engine that `tidysession clear` runs too;
//! [`metrics`](mod@metrics) lists what the library reports through the `metrics`
//! facade.
//!
//! # How a request is handled
//!
//! See [`decide`](mod@decide) for the full table, and the repository's `docs/design.md` for
//! the reasons behind the main choices.

pub mod auth;
pub mod cleanup;
mod client;
mod coalesce;
mod config;
pub mod decide;
#[cfg(feature = "django")]
pub mod django;
#[cfg(feature = "axum")]
mod extract;
mod id;
mod keyring;
mod layer;
pub mod metrics;
pub mod reaper;
pub mod record;
mod seal;
mod session;
pub mod store;

pub use client::ClientAddress;
pub use config::{Anonymous, OverBudget, SessionConfig, DEFAULT_COOKIE_BUDGET};
pub use cookie::SameSite;
#[cfg(feature = "axum")]
pub use extract::MissingSessionLayer;
pub use id::{IdError, IdFormat, SessionId, StorageKey};
pub use keyring::{KeyRing, KeyRingError, KEY_LEN};
pub use layer::{SessionLayer, SessionService};
pub use record::{Change, Record, RESERVED_PREFIX};
pub use session::{Expiry, Session, SessionError};
pub use store::{SessionStore, StoreError, Updated};

/// The README's code must compile.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
