//! One classification of the errors the SQL stores meet.

use crate::store::StoreError;

#[cfg(any(feature = "postgres", feature = "mysql", feature = "django"))]
/// The database error behind a store error, if the server (or SQLite) answered with one.
fn database_error(e: &StoreError) -> Option<&(dyn sqlx::error::DatabaseError + 'static)> {
    let StoreError::Backend(source) = e else {
        return None;
    };
    match source.downcast_ref::<sqlx::Error>()? {
        sqlx::Error::Database(db) => Some(&**db),
        _ => None,
    }
}

#[cfg(any(feature = "postgres", feature = "mysql", feature = "django"))]
/// Whether a statement failed on a unique key: PostgreSQL's 23505, MySQL's duplicate entry,
/// SQLite's unique or primary-key constraint.
pub(crate) fn is_unique_violation(e: &StoreError) -> bool {
    database_error(e).is_some_and(|db| db.is_unique_violation())
}

#[cfg(any(feature = "mysql", feature = "django"))]
/// Whether the database rolled the statement or transaction back as a deadlock victim or
/// serialization failure (SQLSTATE 40001, which MySQL's deadlock 1213 carries, or
/// PostgreSQL's 40P01): nothing of it was applied, so it may run again.
pub(crate) fn is_retryable(e: &StoreError) -> bool {
    database_error(e).is_some_and(|db| matches!(db.code().as_deref(), Some("40001" | "40P01")))
}

/// Whether a connection whose operation ended with `result` may be reused: yes after a
/// success and after an error the server answered with (a constraint, a deadlock) or a
/// store outcome such as [`StoreError::Gone`]; no after a failure that may have left it in
/// any state (I/O, protocol).
pub(crate) fn leaves_connection_usable<T>(result: &Result<T, StoreError>) -> bool {
    match result {
        Err(StoreError::Backend(e)) => {
            matches!(e.downcast_ref(), Some(sqlx::Error::Database(_)))
        }
        _ => true,
    }
}
