//! `decide`, row by row and then exhaustively: no I/O, no clock.

use super::{decide, CookieOp, Facts, Incoming, Loaded, Plan, StoreOp, TestCookie};
use crate::SessionConfig;

fn plan(facts: Facts) -> Plan {
    decide(&facts, &SessionConfig::default())
}

fn found(touch_due: bool) -> Loaded {
    Loaded::Found { touch_due }
}

fn read(incoming: Incoming, loaded: Loaded) -> Facts {
    Facts {
        accessed: true,
        loaded,
        empty: !matches!(loaded, Loaded::Found { .. }),
        ..Facts::untouched(incoming)
    }
}

fn write(incoming: Incoming, loaded: Loaded) -> Facts {
    Facts {
        keys_changed: true,
        empty: false,
        ..read(incoming, loaded)
    }
}

fn expect(facts: Facts, store: StoreOp, cookie: CookieOp, vary: bool) {
    let p = plan(facts);
    assert_eq!(
        (p.store, p.cookie, p.vary),
        (store, cookie, vary),
        "{facts:?}"
    );
}

#[test]
fn untouched_without_cookie_does_nothing() {
    expect(
        Facts::untouched(Incoming::Absent),
        StoreOp::None,
        CookieOp::Keep,
        false,
    );
}

#[test]
fn untouched_with_malformed_cookie_removes_it_without_io() {
    expect(
        Facts::untouched(Incoming::Malformed),
        StoreOp::None,
        CookieOp::Remove,
        false,
    );
}

#[test]
fn untouched_with_valid_cookie_does_nothing() {
    expect(
        Facts::untouched(Incoming::Valid),
        StoreOp::None,
        CookieOp::Keep,
        false,
    );
}

#[test]
fn read_without_cookie_only_varies() {
    expect(
        read(Incoming::Absent, Loaded::Missing),
        StoreOp::None,
        CookieOp::Keep,
        true,
    );
}

#[test]
fn read_of_found_session_varies_and_touches_only_when_due() {
    expect(
        read(Incoming::Valid, found(false)),
        StoreOp::None,
        CookieOp::Keep,
        true,
    );
    expect(
        read(Incoming::Valid, found(true)),
        StoreOp::Touch,
        CookieOp::Set,
        true,
    );
}

#[test]
fn read_of_unknown_cookie_removes_it_and_creates_nothing() {
    expect(
        read(Incoming::Valid, Loaded::Missing),
        StoreOp::None,
        CookieOp::Remove,
        true,
    );
    let every_request = SessionConfig::default().with_save_every_request(true);
    let p = decide(&read(Incoming::Valid, Loaded::Missing), &every_request);
    assert_eq!((p.store, p.cookie), (StoreOp::None, CookieOp::Remove));
}

#[test]
fn write_without_record_creates() {
    expect(
        write(Incoming::Absent, Loaded::Missing),
        StoreOp::Create,
        CookieOp::Set,
        true,
    );
    expect(
        write(Incoming::Malformed, Loaded::Missing),
        StoreOp::Create,
        CookieOp::Set,
        true,
    );
    expect(
        write(Incoming::Valid, Loaded::Missing),
        StoreOp::Create,
        CookieOp::Set,
        true,
    );
}

#[test]
fn write_to_found_record_updates_and_refreshes_expiry_only_when_due() {
    let p = plan(write(Incoming::Valid, found(false)));
    assert_eq!(
        (p.store, p.cookie, p.touches),
        (StoreOp::Update, CookieOp::Keep, false)
    );
    let p = plan(write(Incoming::Valid, found(true)));
    assert_eq!(
        (p.store, p.cookie, p.touches),
        (StoreOp::Update, CookieOp::Set, true)
    );
    let set_expiry = Facts {
        expiry_set: true,
        ..write(Incoming::Valid, found(false))
    };
    let p = plan(set_expiry);
    assert_eq!(
        (p.store, p.cookie, p.touches),
        (StoreOp::Update, CookieOp::Set, true)
    );
}

#[test]
fn write_that_empties_the_data_sends_the_removals() {
    // The store deletes the record if nothing else was set meanwhile (then the layer removes
    // the cookie); a plain delete could wipe another request's key (I5).
    let f = Facts {
        empty: true,
        ..write(Incoming::Valid, found(false))
    };
    expect(f, StoreOp::Update, CookieOp::Keep, true);
    // A found record that never held data of its own (only reserved keys) is just deleted.
    let f = Facts {
        empty: true,
        ..read(Incoming::Valid, found(false))
    };
    expect(f, StoreOp::Delete, CookieOp::Remove, true);
}

#[test]
fn flush_deletes_even_after_a_failed_load() {
    let f = Facts {
        flushed: true,
        ..read(Incoming::Valid, Loaded::Failed)
    };
    expect(f, StoreOp::Delete, CookieOp::Remove, true);
}

#[test]
fn flush_deletes_without_loading() {
    let f = Facts {
        accessed: true,
        flushed: true,
        ..Facts::untouched(Incoming::Valid)
    };
    expect(f, StoreOp::Delete, CookieOp::Remove, true);
    let after_load = Facts {
        flushed: true,
        empty: true,
        ..read(Incoming::Valid, found(false))
    };
    expect(after_load, StoreOp::Delete, CookieOp::Remove, true);
}

#[test]
fn flush_then_write_starts_a_new_session() {
    let f = Facts {
        flushed: true,
        ..write(Incoming::Valid, found(false))
    };
    expect(f, StoreOp::DeleteThenCreate, CookieOp::Set, true);
    let no_cookie = Facts {
        flushed: true,
        ..write(Incoming::Absent, Loaded::Missing)
    };
    expect(no_cookie, StoreOp::Create, CookieOp::Set, true);
}

#[test]
fn cycle_of_found_record_renames() {
    let f = Facts {
        cycled: true,
        ..read(Incoming::Valid, found(false))
    };
    expect(f, StoreOp::Rename, CookieOp::Set, true);
}

#[test]
fn cycle_of_nothing_stores_nothing() {
    let f = Facts {
        cycled: true,
        ..read(Incoming::Absent, Loaded::Missing)
    };
    expect(f, StoreOp::None, CookieOp::Keep, true);
}

#[test]
fn server_errors_save_nothing_and_send_no_cookie() {
    for facts in [
        write(Incoming::Absent, Loaded::Missing),
        write(Incoming::Valid, found(true)),
        Facts {
            flushed: true,
            ..read(Incoming::Valid, found(false))
        },
        Facts {
            test_cookie: TestCookie::Set,
            ..read(Incoming::Absent, Loaded::Missing)
        },
    ] {
        let f = Facts {
            server_error: true,
            ..facts
        };
        let p = plan(f);
        assert_eq!(
            (p.store, p.cookie, p.test_cookie),
            (StoreOp::None, CookieOp::Keep, CookieOp::Keep)
        );
        let saving = decide(
            &f,
            &SessionConfig::default().with_save_on_server_error(true),
        );
        assert_eq!(
            saving,
            Plan {
                vary: true,
                ..plan(facts)
            },
            "configurable"
        );
    }
}

#[test]
fn save_every_request_touches_found_sessions_even_when_only_read() {
    let config = SessionConfig::default().with_save_every_request(true);
    let p = decide(&read(Incoming::Valid, found(false)), &config);
    assert_eq!((p.store, p.cookie), (StoreOp::Touch, CookieOp::Set));
}

#[test]
fn test_cookie_is_a_cookie_not_a_record() {
    let f = Facts {
        test_cookie: TestCookie::Set,
        ..read(Incoming::Absent, Loaded::Missing)
    };
    let p = plan(f);
    assert_eq!((p.store, p.test_cookie), (StoreOp::None, CookieOp::Set));
}

#[test]
fn a_failed_load_plans_nothing() {
    expect(
        write(Incoming::Valid, Loaded::Failed),
        StoreOp::None,
        CookieOp::Keep,
        true,
    );
}

/// Every combination of facts, checked against the invariants rather than row by row.
#[test]
fn every_combination_keeps_the_invariants() {
    let incomings = [
        Incoming::Absent,
        Incoming::Malformed,
        Incoming::Valid,
        Incoming::Sealed,
    ];
    let loads = [
        Loaded::Never,
        Loaded::Failed,
        Loaded::Missing,
        found(false),
        found(true),
    ];
    let tests = [TestCookie::Unchanged, TestCookie::Set, TestCookie::Delete];
    let bools = [false, true];
    let mut checked = 0;
    for incoming in incomings {
        for loaded in loads {
            // Only a well-formed cookie can be loaded; no cookie is known missing at once; a
            // sealed cookie opens without a store, so its load cannot fail.
            let possible = match incoming {
                Incoming::Valid => true,
                Incoming::Sealed => loaded != Loaded::Failed,
                _ => loaded == Loaded::Missing,
            };
            if !possible {
                continue;
            }
            for test_cookie in tests {
                for [accessed, keys_changed, expiry_set, empty, flushed, cycled, sealable, server_error] in
                    (0..256).map(|m: u32| std::array::from_fn(|i| bools[(m >> i & 1) as usize]))
                {
                    for every in bools {
                        let f = Facts {
                            incoming,
                            loaded,
                            accessed,
                            keys_changed,
                            expiry_set,
                            empty,
                            flushed,
                            cycled,
                            sealable,
                            test_cookie,
                            server_error,
                        };
                        let config = SessionConfig::default().with_save_every_request(every);
                        let p = decide(&f, &config);
                        check(&f, &p, every);
                        checked += 1;
                    }
                }
            }
        }
    }
    // 11 cookie/load pairs x 3 test-cookie states x 2^8 flags x 2 policies.
    assert_eq!(checked, 11 * 3 * 256 * 2);
}

fn check(f: &Facts, p: &Plan, save_every_request: bool) {
    let ctx = format!("{f:?} -> {p:?}");
    // I8: a failed response persists nothing and sends no cookie.
    if f.server_error {
        assert_eq!(p.store, StoreOp::None, "{ctx}");
        assert_eq!(p.cookie, CookieOp::Keep, "{ctx}");
    }
    // I2: nothing empty is ever created or moved; emptying a found record sends the removals,
    // and the store deletes what is left empty (the conformance suite checks that part).
    if f.empty {
        assert!(
            !matches!(
                p.store,
                StoreOp::Create | StoreOp::Rename | StoreOp::DeleteThenCreate
            ),
            "{ctx}"
        );
        if p.store == StoreOp::Update {
            assert!(f.keys_changed && !f.flushed, "{ctx}");
            assert!(matches!(f.loaded, Loaded::Found { .. }), "{ctx}");
        }
    }
    // I4: without a found record, only new data creates anything.
    if !matches!(f.loaded, Loaded::Found { .. }) {
        assert!(
            !matches!(p.store, StoreOp::Update | StoreOp::Touch | StoreOp::Rename),
            "{ctx}"
        );
        if matches!(p.store, StoreOp::Create | StoreOp::DeleteThenCreate) {
            assert!(f.keys_changed && !f.empty, "{ctx}");
        }
    }
    // A store error while loading: never guess, except that a flush (logout) still deletes.
    if f.loaded == Loaded::Failed && !f.flushed {
        assert_eq!(p.store, StoreOp::None, "{ctx}");
    }
    // I1 / I3: Vary exactly when the session was used.
    assert_eq!(p.vary, f.accessed, "{ctx}");
    // A removal cookie only where a cookie came in.
    if p.cookie == CookieOp::Remove {
        assert_ne!(f.incoming, Incoming::Absent, "{ctx}");
    }
    // Every create or rename sends the new id.
    if matches!(
        p.store,
        StoreOp::Create | StoreOp::Rename | StoreOp::DeleteThenCreate
    ) {
        assert_eq!(p.cookie, CookieOp::Set, "{ctx}");
    }
    // I3: a found session's expiry moves only when due, asked for, or per policy (a
    // promotion to a new record starts a fresh idle period); and a cookie is refreshed
    // exactly when its expiry moves or its id changes.
    if let Loaded::Found { touch_due } = f.loaded {
        let fresh_record = matches!(p.store, StoreOp::Delete | StoreOp::Create);
        if p.touches && !f.flushed && !f.cycled && !fresh_record {
            assert!(touch_due || f.expiry_set || save_every_request, "{ctx}");
        }
    }
    if p.cookie == CookieOp::Set {
        assert!(
            p.touches,
            "a cookie is only re-sent with a new lifetime: {ctx}"
        );
    }
    // Deleting the record removes the cookie, unless new anonymous data replaces it.
    if p.store == StoreOp::Delete {
        assert!(
            p.cookie == CookieOp::Remove || (p.cookie == CookieOp::Seal && f.flushed),
            "{ctx}"
        );
    }
    // I10: data that may live in the cookie never starts a record; only a stored record that
    // was found (and not flushed) stays in the store.
    let stored =
        f.incoming == Incoming::Valid && matches!(f.loaded, Loaded::Found { .. }) && !f.flushed;
    if f.sealable && !stored {
        assert!(
            !matches!(
                p.store,
                StoreOp::Create | StoreOp::DeleteThenCreate | StoreOp::Rename
            ),
            "{ctx}"
        );
    }
    // A sealed cookie has no record behind it: nothing to update, touch, rename or delete.
    if f.incoming == Incoming::Sealed {
        assert!(matches!(p.store, StoreOp::None | StoreOp::Create), "{ctx}");
    }
    // Sealing sends data: never empty, never data that must be in the store.
    if p.cookie == CookieOp::Seal {
        assert!(f.sealable && !f.empty, "{ctx}");
        assert!(matches!(p.store, StoreOp::None | StoreOp::Delete), "{ctx}");
    }
    // A sealed session becomes a record only when it may not stay in the cookie.
    if f.incoming == Incoming::Sealed && p.store == StoreOp::Create {
        assert!(!f.sealable && !f.empty, "{ctx}");
    }
}

fn sealable(f: Facts) -> Facts {
    Facts {
        sealable: true,
        ..f
    }
}

#[test]
fn cookie_tier_rows() {
    // New anonymous data: sealed, no store I/O.
    expect(
        sealable(write(Incoming::Absent, Loaded::Missing)),
        StoreOp::None,
        CookieOp::Seal,
        true,
    );
    expect(
        sealable(write(Incoming::Valid, Loaded::Missing)),
        StoreOp::None,
        CookieOp::Seal,
        true,
    );
    // Reading a sealed session: nothing until the touch window is due.
    expect(
        sealable(read(Incoming::Sealed, found(false))),
        StoreOp::None,
        CookieOp::Keep,
        true,
    );
    let due = plan(sealable(read(Incoming::Sealed, found(true))));
    assert_eq!(
        (due.store, due.cookie, due.touches),
        (StoreOp::None, CookieOp::Seal, true)
    );
    // Writing it re-seals; the expiry stays unless due.
    let w = plan(sealable(write(Incoming::Sealed, found(false))));
    assert_eq!(
        (w.store, w.cookie, w.touches),
        (StoreOp::None, CookieOp::Seal, false)
    );
    // Login (or outgrowing the cookie): promotion, one create.
    expect(
        write(Incoming::Sealed, found(false)),
        StoreOp::Create,
        CookieOp::Set,
        true,
    );
    // A sealed cookie that did not open, or whose data was all removed: removal cookie.
    expect(
        read(Incoming::Sealed, Loaded::Missing),
        StoreOp::None,
        CookieOp::Remove,
        true,
    );
    let emptied = Facts {
        empty: true,
        ..sealable(write(Incoming::Sealed, found(false)))
    };
    expect(emptied, StoreOp::None, CookieOp::Remove, true);
    // Logout of a stored session, then anonymous data: delete, and the new data sealed.
    let relog = Facts {
        flushed: true,
        ..sealable(write(Incoming::Valid, found(false)))
    };
    expect(relog, StoreOp::Delete, CookieOp::Seal, true);
    // Untouched sealed cookie: nothing at all.
    expect(
        Facts::untouched(Incoming::Sealed),
        StoreOp::None,
        CookieOp::Keep,
        false,
    );
}
