//! [`decide`]: what to do with a session at the end of a request. Pure: no I/O, no clock.
//!
//! The whole behaviour of the layer (invariants I1–I5 and I8 of the design) is this one
//! function from the request's [`Facts`] to a [`Plan`]; the layer only carries the plan out.
//!
//! The table of what it decides is in the crate docs ("How a request is handled"), where
//! users read it; `tests.rs` checks it row by row and then exhaustively.

use crate::config::SessionConfig;

/// What the request carried in the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// No session cookie.
    Absent,
    /// A session cookie that is not even a well-formed id.
    Malformed,
    /// A well-formed id; the store has not necessarily been asked about it.
    Valid,
    /// A value of the sealed form: the data itself, not necessarily genuine.
    Sealed,
}

/// What loading the session found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loaded {
    /// Never loaded: the handler did not need the stored data.
    Never,
    /// The store failed while loading; the handler saw an error.
    Failed,
    /// No live record for the cookie (unknown, expired, or never had one).
    Missing,
    /// A live record.
    Found {
        /// Whether its expiry is close enough to refresh (see
        /// [`SessionConfig::with_touch_window`]).
        touch_due: bool,
    },
}

/// What a request did to its session, gathered by the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    /// The incoming cookie.
    pub(crate) incoming: Incoming,
    /// What loading found (the record as it was before any `flush`).
    pub(crate) loaded: Loaded,
    /// The handler used the session at all (read or write).
    pub(crate) accessed: bool,
    /// At least one key differs from what was loaded.
    pub(crate) keys_changed: bool,
    /// The handler gave this session a new expiry (see [`Session::set_expiry`](crate::Session::set_expiry)).
    pub(crate) expiry_set: bool,
    /// The session holds no data at the end of the request.
    pub(crate) empty: bool,
    /// The handler flushed the session.
    pub(crate) flushed: bool,
    /// The handler cycled the session id.
    pub(crate) cycled: bool,
    /// The data at the end of the request may live in the cookie: the cookie tier is on, the
    /// session is not a stored record, it is not logged in (or the layer is cookie-only), and
    /// it fits the budget.
    pub(crate) sealable: bool,
    /// The test cookie was set or deleted.
    pub(crate) test_cookie: TestCookie,
    /// The response is a server error (5xx).
    pub(crate) server_error: bool,
}

impl Facts {
    /// The facts of a request that never touched its session.
    #[cfg(test)]
    pub(crate) fn untouched(incoming: Incoming) -> Self {
        Self {
            incoming,
            loaded: Loaded::Never,
            accessed: false,
            keys_changed: false,
            expiry_set: false,
            empty: true,
            flushed: false,
            cycled: false,
            sealable: false,
            test_cookie: TestCookie::Unchanged,
            server_error: false,
        }
    }
}

/// What the handler did with the test cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TestCookie {
    /// Nothing.
    Unchanged,
    /// Asked to set it.
    Set,
    /// Asked to delete it.
    Delete,
}

/// The one store call a request makes at its end, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreOp {
    /// No store I/O.
    None,
    /// Create a record under a fresh id.
    Create,
    /// Send the changed keys (and expiry) of the found record.
    Update,
    /// Refresh the found record's expiry, nothing else.
    Touch,
    /// Move the found record to a fresh id, with the changes, atomically.
    Rename,
    /// Delete the found record.
    Delete,
    /// Delete the flushed record and create the data written after the flush under a fresh id.
    DeleteThenCreate,
}

/// What to do with a cookie in the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CookieOp {
    /// Send nothing.
    Keep,
    /// Send the cookie (new or refreshed).
    Set,
    /// Send a removal cookie.
    Remove,
    /// Send the data itself, sealed, as the cookie (no store record).
    Seal,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a plan does nothing until the layer carries it out"]
pub(crate) struct Plan {
    /// The store call.
    pub(crate) store: StoreOp,
    /// The session cookie.
    pub(crate) cookie: CookieOp,
    /// The test cookie.
    pub(crate) test_cookie: CookieOp,
    /// Whether the store call (or the sealed cookie) carries a new expiry (now plus the idle
    /// timeout, within the absolute timeout). Otherwise the session keeps its expiry, and the
    /// browser's cookie, which expires with it, needs no refresh.
    pub(crate) touches: bool,
    /// Whether the response gets `Vary: Cookie`.
    pub(crate) vary: bool,
}

impl Plan {
    const NOTHING: Plan = Plan {
        store: StoreOp::None,
        cookie: CookieOp::Keep,
        test_cookie: CookieOp::Keep,
        touches: false,
        vary: false,
    };

    fn with(store: StoreOp, cookie: CookieOp) -> Self {
        Self {
            store,
            cookie,
            // New records and new ids get a fresh idle period (within the absolute timeout,
            // which still counts from creation); touches exist to move it.
            touches: matches!(
                store,
                StoreOp::Create | StoreOp::DeleteThenCreate | StoreOp::Rename | StoreOp::Touch
            ),
            ..Self::NOTHING
        }
    }

    /// New data sealed into the cookie, with a fresh idle period.
    const SEAL_NEW: Plan = Plan {
        cookie: CookieOp::Seal,
        touches: true,
        ..Self::NOTHING
    };
}

/// Decides the store call and cookies for a request's session. See the [module docs](self).
///
/// When a store call in the plan fails with [`StoreError::Gone`](crate::StoreError::Gone), or
/// an update reports [`Updated::Deleted`](crate::Updated::Deleted), the layer sends a removal
/// cookie instead of the planned one and re-creates nothing.
pub(crate) fn decide(facts: &Facts, config: &SessionConfig) -> Plan {
    if facts.server_error && !config.save_on_server_error {
        return Plan {
            vary: facts.accessed,
            ..Plan::NOTHING
        };
    }
    let mut plan = session_plan(facts, config);
    plan.vary = facts.accessed;
    plan.test_cookie = match facts.test_cookie {
        TestCookie::Unchanged => CookieOp::Keep,
        TestCookie::Set => CookieOp::Set,
        TestCookie::Delete => CookieOp::Remove,
    };
    plan
}

fn session_plan(facts: &Facts, config: &SessionConfig) -> Plan {
    use CookieOp::{Keep, Remove, Set};
    let has_data = !facts.empty;
    // Data that would start a record where there is none.
    let new_data = has_data && facts.keys_changed;
    // Whether the cookie may name a live record (it was not found missing).
    let maybe_record = facts.incoming == Incoming::Valid && facts.loaded != Loaded::Missing;
    let removal_if_cookie = if facts.incoming == Incoming::Absent {
        Keep
    } else {
        Remove
    };
    // Where data that has no record yet goes: the cookie when it may (I10), else a new record.
    let new_home = if facts.sealable {
        Plan::SEAL_NEW
    } else {
        Plan::with(StoreOp::Create, Set)
    };

    // A flush (logout) deletes without needing the data, so it goes ahead even when loading
    // failed earlier in the request.
    if facts.flushed {
        return match (maybe_record, new_data) {
            (true, true) if facts.sealable => Plan {
                store: StoreOp::Delete,
                ..Plan::SEAL_NEW
            },
            (true, true) => Plan::with(StoreOp::DeleteThenCreate, Set),
            (true, false) => Plan::with(StoreOp::Delete, Remove),
            (false, true) => new_home,
            (false, false) => Plan::with(StoreOp::None, removal_if_cookie),
        };
    }
    match facts.loaded {
        // The handler saw the store error; guessing would risk overwriting data.
        Loaded::Failed => Plan::NOTHING,
        // The data came sealed in the cookie: no store I/O unless it must move to the store.
        Loaded::Found { touch_due } if facts.incoming == Incoming::Sealed => {
            let refresh = touch_due || config.save_every_request || facts.expiry_set;
            if !has_data {
                Plan::with(StoreOp::None, Remove)
            } else if facts.sealable && (facts.keys_changed || facts.cycled || refresh) {
                // A cycle re-seals too: the new value has a fresh nonce.
                Plan {
                    touches: refresh,
                    ..Plan::SEAL_NEW
                }
            } else if !facts.sealable && (facts.keys_changed || facts.cycled) {
                // Logged in, or outgrew the cookie: promotion, under a fresh id. (A mere read
                // never writes, even of a cookie that would no longer fit.)
                Plan::with(StoreOp::Create, Set)
            } else {
                Plan::NOTHING
            }
        }
        Loaded::Found { touch_due } => {
            // Expiry moves at most once per touch window (I3), unless asked otherwise.
            let refresh = touch_due || config.save_every_request || facts.expiry_set;
            if !has_data && !facts.keys_changed {
                // Found holding nothing (only tidysession's own keys): nothing to lose.
                Plan::with(StoreOp::Delete, Remove)
            } else if !has_data {
                // The handler removed the last keys. Send the removals, not a delete: another
                // request may have set a key meanwhile, and the store deletes the record only
                // if nothing is left (then the layer removes the cookie).
                Plan::with(StoreOp::Update, Keep)
            } else if facts.cycled {
                Plan::with(StoreOp::Rename, Set)
            } else if facts.keys_changed {
                Plan {
                    touches: refresh,
                    ..Plan::with(StoreOp::Update, if refresh { Set } else { Keep })
                }
            } else if refresh {
                Plan::with(StoreOp::Touch, Set)
            } else {
                Plan::NOTHING
            }
        }
        // Never loaded: the handler did not need stored data (I1). Only a malformed cookie
        // earns a response cookie, and that costs no I/O.
        Loaded::Never => {
            let cookie = match facts.incoming {
                Incoming::Malformed => Remove,
                _ => Keep,
            };
            Plan::with(StoreOp::None, cookie)
        }
        // No record (no cookie, a bad one, or nothing found): only new data creates one, under
        // a fresh id (I4).
        Loaded::Missing => {
            if new_data {
                new_home
            } else {
                Plan::with(StoreOp::None, removal_if_cookie)
            }
        }
    }
}

#[cfg(test)]
mod tests;
