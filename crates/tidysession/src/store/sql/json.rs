//! Saves applied inside the database's JSON functions (SQLite and MySQL/MariaDB; PostgreSQL's
//! `jsonb` operators need no such help): only the changed keys travel.

use sqlx::{Database, Encode, Type};

use super::row::millis;
use crate::record::{Change, ExpiryChange};

/// How a database names the JSON functions an in-place save uses.
pub(crate) struct JsonDialect {
    /// Removes paths from a document: `json_remove`, `JSON_REMOVE`.
    pub(crate) remove: &'static str,
    /// Sets paths in a document: `json_set`, `JSON_SET`.
    pub(crate) set: &'static str,
    /// A bound JSON text as a JSON value: `json(?)`, `JSON_EXTRACT(?, '$')`.
    pub(crate) value: &'static str,
    /// The larger of two integers: `MAX`, `GREATEST`.
    pub(crate) max: &'static str,
    /// Whether a `$."key"` path names `key` exactly in this database.
    pub(crate) path_safe: fn(&str) -> bool,
}

impl JsonDialect {
    /// Whether every key `change` sets or removes can be named by a JSON path, so the change
    /// can be applied in place ([`in_place_assignments`]); otherwise the store reads, changes
    /// and writes back the record in a transaction.
    pub(crate) fn names_every_key(&self, change: &Change) -> bool {
        change
            .set
            .keys()
            .chain(&change.removed)
            .all(|k| (self.path_safe)(k))
    }
}

/// The JSON path of a top-level key: `$."key"`.
fn json_path(key: &str) -> String {
    format!("$.\"{key}\"")
}

/// `data = …[, expires_at = …][, user_id = ?]` applying `change` in place. Its parameters, in
/// order: one path per removed key, a path and a JSON text per set key, the expiry if it
/// moves, then the user if the change files or unfiles the record ([`bind_change`]). Leaving
/// `expires_at` and `user_id` out when they do not move spares index writes.
pub(crate) fn in_place_assignments(change: &Change, d: &JsonDialect) -> String {
    let mut expr = String::from("data");
    if !change.removed.is_empty() {
        let paths = vec!["?"; change.removed.len()].join(", ");
        expr = format!("{}({expr}, {paths})", d.remove);
    }
    if !change.set.is_empty() {
        let pairs = vec![format!("?, {}", d.value); change.set.len()].join(", ");
        expr = format!("{}({expr}, {pairs})", d.set);
    }
    let expiry = match change.expiry {
        None => String::new(),
        Some(ExpiryChange::Touch(_)) => format!(", expires_at = {}(expires_at, ?)", d.max),
        Some(ExpiryChange::Set(_)) => ", expires_at = ?".to_owned(),
    };
    let user = match change.user() {
        Some(_) => ", user_id = ?",
        None => "",
    };
    format!("data = {expr}{expiry}{user}")
}

/// Binds the parameters of [`in_place_assignments`], in its order: a path per removed key, a
/// path and a JSON text per set key, the expiry when it moves, the user when the change files
/// or unfiles the record (`NULL` to unfile).
pub(crate) fn bind_change<'q, DB>(
    mut query: sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>,
    change: &'q Change,
) -> sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    String: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    for k in &change.removed {
        query = query.bind(json_path(k));
    }
    for (k, v) in &change.set {
        query = query.bind(json_path(k)).bind(v.to_string());
    }
    if let Some(ExpiryChange::Touch(at) | ExpiryChange::Set(at)) = change.expiry {
        query = query.bind(millis(at));
    }
    match change.user() {
        Some(user) => query.bind(user),
        None => query,
    }
}
