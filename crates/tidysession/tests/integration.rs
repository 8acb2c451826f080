//! tidysession's integration tests, in one binary.
//!
//! - `conformance`: the store contract, written once; `stores` plugs each store into it.
//! - `decide_table`: the pure decision function, row by row, no I/O.
//! - `layer`: the decision table again through the real layer, counting store I/O.
//! - `concurrency`: concurrent requests through the layer on SQLite (lost updates, resurrection).
//! - `sqlite`: what the SQLite file holds at rest.
//! - `mysql`: the MySQL/MariaDB store against a real server (feature `mysql`).
//! - `util`: the request harness.

#![allow(unreachable_pub, missing_docs)]

mod conformance;
mod util;

mod concurrency;
mod decide_table;
mod layer;
#[cfg(feature = "mysql")]
mod mysql;
mod sqlite;
mod stores;
