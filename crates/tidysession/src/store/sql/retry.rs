//! One retry of an operation the database rolled back as a deadlock victim.

use std::future::Future;

use super::error::is_retryable;
use crate::store::StoreError;

/// How often an operation the database rolled back as a deadlock victim runs again.
pub(crate) const RETRIES: usize = 5;

/// Runs `op`, and again while the database rolls it back as a deadlock victim or
/// serialization failure ([`is_retryable`]), at most [`RETRIES`] more times. Nothing of a
/// rolled-back attempt was applied, so running it again is safe.
pub(crate) async fn retry<T, Fut>(mut op: impl FnMut() -> Fut) -> Result<T, StoreError>
where
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut retries = 0;
    loop {
        match op().await {
            Err(e) if retries < RETRIES && is_retryable(&e) => {
                retries += 1;
                tracing::debug!(retries, "session store deadlock, retrying");
            }
            other => return other,
        }
    }
}
