//! Exclusive, named locks: at most one holder at a time (see
//! [`Maintenance::try_exclusive`](super::Maintenance::try_exclusive)).

use std::collections::HashSet;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

/// A lock some store granted; see [`ExclusiveGuard`]. Stores with a lock of their own
/// implement this and wrap it with [`ExclusiveGuard::new`].
#[async_trait]
pub trait HeldLock: Send + Sync + fmt::Debug {
    /// Whether the lock is still held. A lock tied to a database connection is lost with the
    /// connection; the holder should stop working under it then.
    async fn still_held(&mut self) -> bool;

    /// Gives the lock up now. Dropping the lock must release it too, if later.
    async fn release(self: Box<Self>);
}

/// An exclusive lock: while it lives, no other holder of the same name exists, in this
/// process or (for stores on a shared server) in any other. Dropping it releases the lock;
/// [`release`](Self::release) does so at once and waits for it.
#[derive(Debug)]
pub struct ExclusiveGuard(Box<dyn HeldLock>);

impl ExclusiveGuard {
    /// Wraps a store's own lock.
    pub fn new(lock: impl HeldLock + 'static) -> Self {
        Self(Box::new(lock))
    }

    /// A lock that is exclusive within this process only: the default for stores without a
    /// lock of their own (SQLite, memory). `None` if another holder has `name`.
    pub fn in_process(name: &str) -> Option<Self> {
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        if !held
            .get_or_insert_with(HashSet::new)
            .insert(name.to_owned())
        {
            return None;
        }
        Some(Self::new(InProcess(name.to_owned())))
    }

    /// Whether the lock is still held (see [`HeldLock::still_held`]).
    pub async fn still_held(&mut self) -> bool {
        self.0.still_held().await
    }

    /// Releases the lock now.
    pub async fn release(self) {
        self.0.release().await;
    }
}

/// The names held through [`ExclusiveGuard::in_process`].
static HELD: Mutex<Option<HashSet<String>>> = Mutex::new(None);

#[derive(Debug)]
struct InProcess(String);

#[async_trait]
impl HeldLock for InProcess {
    async fn still_held(&mut self) -> bool {
        true
    }
    async fn release(self: Box<Self>) {
        // Dropping releases.
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = held.as_mut() {
            held.remove(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ExclusiveGuard;

    #[tokio::test]
    async fn in_process_locks_have_one_holder_at_a_time() {
        let name = "tidysession_test_in_process_lock";
        let first = ExclusiveGuard::in_process(name).unwrap();
        assert!(ExclusiveGuard::in_process(name).is_none());
        let other = ExclusiveGuard::in_process("tidysession_test_other_lock").unwrap();
        first.release().await;
        let again = ExclusiveGuard::in_process(name).unwrap();
        drop(again);
        assert!(ExclusiveGuard::in_process(name).is_some());
        drop(other);
    }
}
