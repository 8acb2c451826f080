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
//! use tidysession::{store::{Maintenance, SqliteStore}, Session, SessionLayer};
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
//! At the end of each request one pure function decides, from what the handler did with the
//! session, on at most one store call and one cookie instruction (invariants I1–I5 and I8, as
//! the repository's `docs/invariants.md` states them):
//!
//! | request | plan |
//! |---|---|
//! | session untouched | nothing (a malformed cookie is removed) |
//! | read, no cookie | `Vary: Cookie` only |
//! | read, record found | `Vary`; a touch and a refreshed cookie only when the touch window is due |
//! | read, unknown or expired cookie | removal cookie, nothing created |
//! | write, no record yet | create, new cookie |
//! | write, record found | update with the changed keys; new expiry and refreshed cookie only when the touch window is due |
//! | write that empties the data | update with the removals; the store deletes the record if nothing is left, and the cookie is removed |
//! | flush | delete, removal cookie |
//! | `cycle_id` on a found record | one atomic rename, new cookie |
//! | response 5xx | nothing saved, no cookie (unless configured otherwise) |
//!
//! With the cookie tier ([`Anonymous::InCookie`], the default),
//! data that may live in the cookie (not logged in, within the cookie budget)
//! never reaches the store:
//!
//! | request | plan |
//! |---|---|
//! | write, no record yet | no store I/O; the data sealed into the cookie |
//! | read, sealed cookie | nothing; re-sealed with a new expiry only when the touch window is due |
//! | write, sealed cookie | no store I/O; re-sealed (under the newest key) |
//! | login, or outgrowing the cookie, on a sealed session | one create with all its data (promotion), new id |
//! | flush of a stored record, then new anonymous data | delete; the new data sealed |
//! | sealed cookie that does not open, or has expired | removal cookie, as for an unknown id |
//!
//! The repository's `docs/design.md` gives the reasons behind the main choices.
//!
//! # Architecture
//!
//! One request, through the modules:
//!
//! 1. `layer` ([`SessionLayer`]) reads the session cookie and gives the request a lazy
//!    [`Session`] handle (`session`). Nothing is loaded yet (I1).
//! 2. The handler asks for a value. The handle loads once: a sealed cookie is opened
//!    (`seal`, under the [`KeyRing`]); an id (`id`: never stored itself, only its
//!    [`StorageKey`](store::StorageKey)) is loaded through the [`store`]'s
//!    [`SessionStore::load`](store::SessionStore::load), which enforces expiry (I9).
//! 3. Writes are recorded as a change set ([`Change`](store::Change): keys set, keys
//!    removed, expiry), not as a "modified" bit.
//! 4. When the response comes back, `decide` turns the handle's final state into a plan
//!    (the table above), and `layer` carries it out: one store call (create, update with the
//!    change set, touch, rename or delete; concurrent saves of one session from this process
//!    are folded into one update by `coalesce`) and one cookie. [`metrics`](mod@metrics)
//!    counts what happened.
//! 5. [`auth`] sits inside the session layer: [`AuthSession`](auth::AuthSession) loads the
//!    user lazily from the session's user key, and login, logout and password changes are
//!    session operations (a rename on login, I7).
//!
//! Out of the request path: [`cleanup`] is the one engine that deletes expired records in
//! short, time-sized, paced batches through a store's [`Maintenance`](store::Maintenance)
//! capability; the [`reaper`] runs it in the background and the CLI's `clear` runs it on
//! demand. The SQL stores share one core (connections, transactions, migrations, error
//! classes, locks) and never import each other; [`django`] reads and writes Django's formats
//! byte for byte; [`tooling`] holds what only operator tools need.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
pub mod cleanup;
mod client;
mod coalesce;
mod config;
mod decide;
#[cfg(feature = "django")]
pub mod django;
#[cfg(feature = "axum")]
mod extract;
mod id;
mod keyring;
mod layer;
pub mod metrics;
pub mod reaper;
mod record;
mod seal;
mod session;
pub mod store;
pub mod tooling;

pub use client::ClientAddress;
pub use config::{Anonymous, OverBudget, SessionConfig, DEFAULT_COOKIE_BUDGET};
pub use cookie::SameSite;
#[cfg(feature = "axum")]
pub use extract::MissingSessionLayer;
pub use keyring::{KeyRing, KeyRingError, KEY_LEN};
pub use layer::{SessionLayer, SessionService};
pub use session::{Expiry, Session, SessionError};
pub use store::StoreError;

/// The README's code must compile.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
