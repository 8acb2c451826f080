//! Saves applied inside the database's JSON functions (SQLite and MySQL/MariaDB; PostgreSQL's
//! `jsonb` operators need no such help): only the changed keys travel.

use sqlx::{Database, Encode, Type};

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
}

/// `data = …[, expires_at = …][, user_id = ?]` applying `change` in place. Its parameters, in
/// order: one path per removed key, a path and a JSON text per set key, the expiry if it
/// moves, then the user if the change files or unfiles the record ([`bind_user`]). Leaving
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
        Some(ExpiryChange::Extend(_)) => format!(", expires_at = {}(expires_at, ?)", d.max),
        Some(ExpiryChange::Set(_)) => ", expires_at = ?".to_owned(),
    };
    let user = match change.user() {
        Some(_) => ", user_id = ?",
        None => "",
    };
    format!("data = {expr}{expiry}{user}")
}

/// Binds the `user_id` parameter of [`in_place_assignments`]: `NULL` when the change unfiles
/// the record, nothing when it leaves the user alone.
pub(crate) fn bind_user<'q, DB>(
    query: sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>,
    change: &'q Change,
) -> sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    match change.user() {
        Some(user) => query.bind(user),
        None => query,
    }
}
