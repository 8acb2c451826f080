//! `simulate` in process: every figure asserted is one the plan counted from the traffic it
//! generated, checked against what the stores really hold.

use std::path::Path;
use std::sync::OnceLock;

use tidysession::tooling::OpCounts;

use super::chart::nice_ceiling;
use super::jar::Jar;
use super::mix::{Mix, Traffic};
use super::plan::{Plan, Sender};
use super::policy::Policy;
use super::report::{Outcome, Report};
use super::runner::simulate;
use super::target::{namespaced, sqlite_file, Target};
use crate::cmd::demo::Users;

/// Accounts for every test, hashed once (argon2 is slow in debug builds).
fn users() -> Users {
    static USERS: OnceLock<Users> = OnceLock::new();
    USERS.get_or_init(|| Users::demo(10).unwrap()).fork()
}

fn default_mix() -> Mix {
    "health=40,bots=25,browsers=20,users=10,stale=5"
        .parse()
        .unwrap()
}

fn outcome(report: &Report, policy: Policy) -> &Outcome {
    report.outcomes.iter().find(|o| o.policy == policy).unwrap()
}

fn writes(c: OpCounts) -> u64 {
    c.writes()
}

/// What must hold for any plan, whatever the store.
fn check(report: &Report) {
    let p = &report.plan;
    let anonymous_writers = p.bot_cart_adds + p.browsers_with_cart;
    let [health, bots, browsers, _users, stale] = [0, 1, 2, 3, 4];

    // tidysession default: a row per logged-in user and nothing else.
    let d = outcome(report, Policy::Default);
    assert_eq!(d.rows, p.logged_in, "default rows");
    assert_eq!(d.counts.creates, p.logged_in, "default creates == logins");
    assert_eq!(d.counts.deletes, 0);
    for t in [health, bots, browsers] {
        assert_eq!(
            d.by_traffic[t],
            OpCounts::default(),
            "default, {:?}",
            Traffic::ALL[t]
        );
    }
    // Stale cookies write nothing; those shaped like a session id cost one load each,
    // as they must under any policy (they could be a logged-in session).
    assert_eq!(writes(d.by_traffic[stale]), 0);
    assert_eq!(d.by_traffic[stale].loads, p.stale_ids);

    // Server-side always: a row for every anonymous writer, plus the users.
    let s = outcome(report, Policy::ServerAlways);
    assert_eq!(s.rows, anonymous_writers + p.logged_in, "server-side rows");
    assert_eq!(s.counts.creates, s.rows, "one create per row, none deleted");
    assert_eq!(s.by_traffic[health], OpCounts::default());
    assert_eq!(s.by_traffic[bots].creates, p.bot_cart_adds);
    assert_eq!(writes(s.by_traffic[stale]), 0);

    // Save every request: the same rows; stale cookies still create nothing (I4).
    let e = outcome(report, Policy::SaveEveryRequest);
    assert_eq!(e.rows, s.rows, "save-every-request rows");
    assert_eq!(e.counts.creates, s.counts.creates);
    assert_eq!(e.by_traffic[health], OpCounts::default());
    assert_eq!(writes(e.by_traffic[stale]), 0);
    assert!(e.counts.touches >= s.counts.touches);

    for o in &report.outcomes {
        assert_eq!(o.samples.first(), Some(&(0, 0)));
        assert_eq!(
            o.samples.last(),
            Some(&(report.plan.steps.len() as u64, o.rows))
        );
        assert!(o.samples.windows(2).all(|w| w[0].0 < w[1].0));
    }
}

#[tokio::test]
async fn simulate_default_mix_on_sqlite_leaves_only_logged_in_users() {
    let plan = Plan::new(600, &default_mix(), 7);
    // The run must exercise every kind of traffic for the checks to mean anything.
    assert!(plan.logged_in > 0 && plan.bot_cart_adds > 0 && plan.browsers_with_cart > 0);
    assert!(plan.stale_ids > 0 && plan.requests.iter().all(|&n| n > 0));
    let target = Target::parse(None).unwrap();
    let report = simulate(&plan, &target, &users()).await.unwrap();
    check(&report);
    // Every user in the pool logged in (the pool is small enough for that), so rows ==
    // distinct logged-in users is the pool, each one counted once.
    assert_eq!(plan.logged_in as usize, plan.user_pool);
    let bytes = |p| outcome(&report, p).bytes.unwrap();
    assert!(bytes(Policy::Default) > 0);
    assert!(bytes(Policy::Default) < bytes(Policy::ServerAlways));
    let table = report.table();
    for needle in [
        "rows at the end",
        "tidysession default",
        "bytes at rest",
        "logged-in users",
    ] {
        assert!(table.contains(needle), "{table}");
    }
    let svg = report.svg();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 3);
}

#[tokio::test]
async fn simulate_another_mix_on_memory() {
    let mix: Mix = "bots=40,users=20,stale=20,health=10,browsers=10"
        .parse()
        .unwrap();
    let plan = Plan::new(200, &mix, 3);
    let report = simulate(&plan, &Target::parse(Some("memory://")).unwrap(), &users())
        .await
        .unwrap();
    check(&report);
    assert!(report.outcomes.iter().all(|o| o.bytes.is_none()));
    assert!(report.table().contains("n/a"));
}

#[tokio::test]
async fn simulate_without_users_leaves_nothing_under_the_default() {
    let mix: Mix = "bots=50,browsers=50".parse().unwrap();
    let plan = Plan::new(150, &mix, 11);
    let report = simulate(
        &plan,
        &Target::parse(Some("sqlite://:memory:")).unwrap(),
        &users(),
    )
    .await
    .unwrap();
    check(&report);
    let d = outcome(&report, Policy::Default);
    assert_eq!((d.rows, d.counts.total()), (0, 0));
    assert!(outcome(&report, Policy::ServerAlways).rows > 0);
}

#[test]
fn simulate_plan_is_a_function_of_the_seed() {
    let mix = default_mix();
    assert_eq!(Plan::new(500, &mix, 1), Plan::new(500, &mix, 1));
    assert_ne!(Plan::new(500, &mix, 1).steps, Plan::new(500, &mix, 2).steps);
    let plan = Plan::new(10_000, &mix, 1);
    assert_eq!((plan.browser_pool, plan.user_pool), (400, 100));
    assert_eq!(plan.requests.iter().sum::<u64>(), 10_000);
    // Each user logs in once, before anything else they do.
    let logins = plan.steps.iter().filter(|s| s.login).count() as u64;
    assert_eq!(logins, plan.logged_in);
    // Bots and stale cookies never keep cookies; only jars do.
    for s in &plan.steps {
        match s.traffic {
            Traffic::Health | Traffic::Bots => assert_eq!(s.sender, Sender::Nobody),
            Traffic::Stale => assert!(matches!(s.sender, Sender::Forged(_))),
            Traffic::Browsers | Traffic::Users => assert!(matches!(s.sender, Sender::Jar(_))),
        }
    }
}

#[test]
fn simulate_mix_is_validated() {
    assert_eq!(default_mix(), Mix([40, 25, 20, 10, 5]));
    assert_eq!("users=100".parse::<Mix>().unwrap(), Mix([0, 0, 0, 100, 0]));
    for (bad, says) in [
        ("health=40,bots=25", "add up to 65"),
        ("health=50,bots=60", "add up to 110"),
        ("health=100,crawlers=0", "unknown traffic \"crawlers\""),
        ("health=50,health=50", "given twice"),
        ("health=fifty,bots=50", "whole percent"),
        ("health=-1,bots=101", "whole percent"),
        ("health", "not NAME=PERCENT"),
        ("", "add up to 0"),
    ] {
        let err = bad.parse::<Mix>().unwrap_err();
        assert!(err.contains(says), "{bad:?}: {err}");
    }
}

#[test]
fn simulate_jar_keeps_the_latest_cookie_and_drops_removed_ones() {
    let mut jar = Jar::default();
    assert_eq!(jar.header(), None);
    jar.take("id=one; HttpOnly; SameSite=Lax; Path=/; Max-Age=1209600");
    jar.take("id_test=1; Path=/");
    jar.take("id=two; Path=/");
    assert_eq!(jar.header().as_deref(), Some("id=two; id_test=1"));
    jar.take("id=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(jar.header().as_deref(), Some("id_test=1"));
    jar.take("id_test=x; Max-Age=0");
    jar.take("garbage without an equals sign");
    assert_eq!(jar.header(), None);
}

#[test]
fn simulate_store_urls() {
    assert_eq!(
        namespaced("postgres://root@127.0.0.1/test", Policy::Default),
        "postgres://root@127.0.0.1/test?schema=tidysession_sim_default"
    );
    assert_eq!(
        namespaced(
            "postgres://root@127.0.0.1/test?sslmode=disable&schema=s",
            Policy::ServerAlways
        ),
        "postgres://root@127.0.0.1/test?sslmode=disable&schema=s_server_always"
    );
    assert_eq!(
        namespaced("mysql://root@h/test?table=t", Policy::SaveEveryRequest),
        "mysql://root@h/test?table=t_save_every"
    );
    assert_eq!(
        namespaced("redis://127.0.0.1:6379?prefix=app:", Policy::Default),
        "redis://127.0.0.1:6379?prefix=app:default:"
    );
    assert_eq!(
        sqlite_file(Path::new("/tmp/x/sim.db"), Policy::Default),
        Path::new("/tmp/x/sim-default.db")
    );
    assert_eq!(
        sqlite_file(Path::new("sim"), Policy::ServerAlways),
        Path::new("sim-server_always")
    );
    for bad in ["ftp://x", "sqlite://", "memory://x", "nonsense"] {
        let err = Target::parse(Some(bad)).unwrap_err().to_string();
        assert!(err.contains("unsupported store URL"), "{bad}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("sim.db");
    std::fs::write(sqlite_file(&base, Policy::Default), b"").unwrap();
    let err = Target::parse(Some(&format!("sqlite://{}", base.display())))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("already exists") && err.contains("fresh database per policy"),
        "{err}"
    );
}

#[test]
fn simulate_nice_ceiling() {
    let cases = [
        (1, 1),
        (3, 5),
        (5, 5),
        (6, 10),
        (101, 200),
        (840, 1000),
        (2001, 5000),
    ];
    for (v, c) in cases {
        assert_eq!(nice_ceiling(v), c, "{v}");
    }
    assert_eq!(nice_ceiling(u64::MAX), u64::MAX);
}
