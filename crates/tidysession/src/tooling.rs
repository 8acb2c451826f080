//! For operator tools such as the `tidysession` command, not for applications: opening a
//! store for maintenance only, showing store URLs without their passwords, and counting a
//! store's operations. These may change in any release.

pub use crate::store::counting::{CountingStore, OpCounts};
pub use crate::store::url::{open_for_maintenance, redact_url};
