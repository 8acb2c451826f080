//! `tidysession simulate`: one seeded traffic mix through the demo's routes, the real session
//! layer and a real store, once per policy, and what each policy left in the store.
//!
//! The traffic is planned first, from the seed alone, so every policy sees exactly the same
//! requests; only the cookies the responses set differ. The plan also counts what each policy
//! must leave behind (every anonymous writer under the server-side policies, only the
//! logged-in users under the default), which the tests check against the store.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use axum::body::Body;
use axum::http::{header, Request};
use tidysession::store::{CountingStore, OpCounts, SessionStore};
use tidysession::{Anonymous, KeyRing, SessionConfig};
use time::OffsetDateTime;
use tower::ServiceExt as _;

use super::demo::{router_with, Users};

/// Arguments of `simulate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Requests per policy.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    requests: u32,
    /// Traffic mix in percent of requests (names: health, bots, browsers, users, stale; they
    /// must add up to 100; a name left out is 0).
    #[arg(long, default_value = "health=40,bots=25,browsers=20,users=10,stale=5")]
    mix: Mix,
    /// Store URL: sqlite://PATH (one file per policy next to PATH, which must not exist yet),
    /// sqlite://:memory:, memory://, or a server store, where each policy gets its own
    /// schema=/table=/prefix= (the given one plus a suffix; it must be empty). Default: a
    /// fresh SQLite file per policy in a temporary directory.
    #[arg(long)]
    store: Option<String>,
    /// Seed of the traffic (the same seed gives the same requests).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also draw the rows over time for each policy into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let plan = Plan::new(args.requests, &args.mix, args.seed);
    let target = Target::parse(args.store.as_deref())?;
    let users = tokio::task::spawn_blocking({
        let n = u32::try_from(plan.user_pool).unwrap_or(u32::MAX);
        move || Users::demo(n)
    })
    .await
    .context("hashing demo passwords")??;
    let started = Instant::now();
    let report = simulate(&plan, &target, &users).await?;
    print!("{}", report.table());
    println!("wall time: {:.1}s", started.elapsed().as_secs_f64());
    if let Some(path) = &args.chart {
        std::fs::write(path, report.svg())
            .with_context(|| format!("writing the chart to {}", path.display()))?;
        println!("chart: {}", path.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The mix

/// The kinds of traffic, in the order of the mix and the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Traffic {
    Health,
    Bots,
    Browsers,
    Users,
    Stale,
}

impl Traffic {
    pub(crate) const ALL: [Traffic; 5] = [
        Traffic::Health,
        Traffic::Bots,
        Traffic::Browsers,
        Traffic::Users,
        Traffic::Stale,
    ];

    fn name(self) -> &'static str {
        match self {
            Traffic::Health => "health",
            Traffic::Bots => "bots",
            Traffic::Browsers => "browsers",
            Traffic::Users => "users",
            Traffic::Stale => "stale",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Percent of requests per kind of traffic; adds up to 100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mix([u32; 5]);

impl std::str::FromStr for Mix {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut shares = [None; 5];
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not NAME=PERCENT"))?;
            let name = name.trim();
            let traffic = Traffic::ALL
                .into_iter()
                .find(|t| t.name() == name)
                .ok_or_else(|| {
                    format!(
                        "unknown traffic {name:?}: expected health, bots, browsers, users or stale"
                    )
                })?;
            let value: u32 = value
                .trim()
                .parse()
                .ok()
                .filter(|v| *v <= 100)
                .ok_or_else(|| format!("{part:?}: the share is a whole percent from 0 to 100"))?;
            let slot = &mut shares[traffic.index()];
            if slot.is_some() {
                return Err(format!("{name:?} is given twice"));
            }
            *slot = Some(value);
        }
        let shares = shares.map(|s| s.unwrap_or(0));
        let sum: u32 = shares.iter().sum();
        if sum != 100 {
            return Err(format!("the shares add up to {sum}, not 100"));
        }
        Ok(Mix(shares))
    }
}

// ---------------------------------------------------------------------------------------------
// The plan

/// A small deterministic generator (SplitMix64): the same seed gives the same traffic on every
/// platform, with no dependency.
#[derive(Debug, Clone)]
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn text(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }
}

const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const ITEMS: &[&str] = &["book", "pen", "mug", "lamp", "shirt", "socks", "tea", "map"];
/// Bots and stale cookies go to these; `/cart/add` is the bots' only write.
const BOT_PATHS: &[&str] = &["/", "/whoami", "/login", "/cart/add"];
const READ_PATHS: &[&str] = &["/", "/whoami", "/cart"];
/// Requests per pooled visitor and per user, on average: pools scale with the traffic.
const REQUESTS_PER_VISITOR: usize = 5;
const REQUESTS_PER_USER: usize = 10;
/// Share of browsers who shop, and how often a shopper adds to the cart.
const SHOPPERS_PERCENT: u64 = 30;
const ADD_PERCENT: u64 = 50;
/// Share of a logged-in user's requests that write.
const USER_WRITE_PERCENT: u64 = 30;
/// The demo's cart limit: the plan never asks for more, so every request succeeds.
const MAX_CART: usize = 50;

/// Who sends a request, and so which cookies go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sender {
    /// No cookies, and none kept.
    Nobody,
    /// This one cookie header, nothing kept.
    Forged(String),
    /// The cookie jar with this index (browsers first, then users).
    Jar(usize),
}

/// One planned request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    traffic: Traffic,
    sender: Sender,
    method: &'static str,
    path: String,
    form: Option<String>,
    /// A login: the response must log this jar in.
    login: bool,
}

/// What every policy runs, and what the traffic implies for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    steps: Vec<Step>,
    pub(crate) seed: u64,
    pub(crate) browser_pool: usize,
    pub(crate) user_pool: usize,
    /// Requests per kind of traffic.
    pub(crate) requests: [u64; 5],
    /// Cart adds by bots: each a new anonymous writer.
    pub(crate) bot_cart_adds: u64,
    /// Pooled browsers who added to their cart at least once.
    pub(crate) browsers_with_cart: u64,
    /// Users who logged in (each once).
    pub(crate) logged_in: u64,
    /// Stale cookies in the form of a session id: no policy can tell them from a live
    /// session without asking the store.
    pub(crate) stale_ids: u64,
}

impl Plan {
    pub(crate) fn new(requests: u32, mix: &Mix, seed: u64) -> Self {
        let mut rng = Prng(seed);
        let pool = |share: u32, per: usize| {
            (requests as usize * share as usize / 100)
                .div_ceil(per)
                .max(1)
        };
        let browser_pool = pool(mix.0[Traffic::Browsers.index()], REQUESTS_PER_VISITOR);
        let user_pool = pool(mix.0[Traffic::Users.index()], REQUESTS_PER_USER);
        let shopper: Vec<bool> = (0..browser_pool)
            .map(|_| rng.chance(SHOPPERS_PERCENT))
            .collect();
        let mut carts = vec![0usize; browser_pool + user_pool];
        let mut logged_in = vec![false; user_pool];
        let mut plan = Plan {
            steps: Vec::with_capacity(requests as usize),
            seed,
            browser_pool,
            user_pool,
            requests: [0; 5],
            bot_cart_adds: 0,
            browsers_with_cart: 0,
            logged_in: 0,
            stale_ids: 0,
        };
        for _ in 0..requests {
            let mut roll = rng.below(100) as u32;
            let traffic = Traffic::ALL
                .into_iter()
                .find(|t| {
                    let share = mix.0[t.index()];
                    let hit = roll < share;
                    roll = roll.saturating_sub(share);
                    hit
                })
                .unwrap_or(Traffic::Health);
            plan.requests[traffic.index()] += 1;
            let item = ITEMS[rng.below(ITEMS.len())];
            let get = |sender, path: String| Step {
                traffic,
                sender,
                method: "GET",
                path,
                form: None,
                login: false,
            };
            let step = match traffic {
                Traffic::Health => get(Sender::Nobody, "/health".to_owned()),
                Traffic::Bots => match BOT_PATHS[rng.below(BOT_PATHS.len())] {
                    "/cart/add" => {
                        plan.bot_cart_adds += 1;
                        get(Sender::Nobody, format!("/cart/add?item={item}"))
                    }
                    path => get(Sender::Nobody, path.to_owned()),
                },
                Traffic::Browsers => {
                    let v = rng.below(browser_pool);
                    let adds = shopper[v] && rng.chance(ADD_PERCENT) && carts[v] < MAX_CART;
                    let read = READ_PATHS[rng.below(READ_PATHS.len())];
                    if adds {
                        if carts[v] == 0 {
                            plan.browsers_with_cart += 1;
                        }
                        carts[v] += 1;
                        // Links and forms alike.
                        if rng.chance(50) {
                            get(Sender::Jar(v), format!("/cart/add?item={item}"))
                        } else {
                            Step {
                                method: "POST",
                                path: "/cart/add".to_owned(),
                                form: Some(format!("item={item}")),
                                ..get(Sender::Jar(v), String::new())
                            }
                        }
                    } else {
                        get(Sender::Jar(v), read.to_owned())
                    }
                }
                Traffic::Users => {
                    let u = rng.below(user_pool);
                    let jar = browser_pool + u;
                    let writes = rng.chance(USER_WRITE_PERCENT) && carts[jar] < MAX_CART;
                    let read = ["/", "/whoami", "/cart", "/account/sessions"][rng.below(4)];
                    if !logged_in[u] {
                        logged_in[u] = true;
                        plan.logged_in += 1;
                        Step {
                            method: "POST",
                            path: "/login".to_owned(),
                            form: Some(format!("username=user{}&password=password", u + 1)),
                            login: true,
                            ..get(Sender::Jar(jar), String::new())
                        }
                    } else if writes {
                        carts[jar] += 1;
                        Step {
                            method: "POST",
                            path: "/cart/add".to_owned(),
                            form: Some(format!("item={item}")),
                            ..get(Sender::Jar(jar), String::new())
                        }
                    } else {
                        get(Sender::Jar(jar), read.to_owned())
                    }
                }
                Traffic::Stale => {
                    let value = match rng.below(3) {
                        // A session id that was never issued, or is long gone.
                        0 => {
                            plan.stale_ids += 1;
                            rng.text(BASE64URL, 32)
                        }
                        // Not even an id.
                        1 => {
                            let len = 1 + rng.below(40);
                            format!("!{}", rng.text(BASE64URL, len))
                        }
                        // The form of a sealed cookie, under no key we hold.
                        _ => format!("1.{}", rng.text(BASE64URL, 90)),
                    };
                    let path = READ_PATHS[rng.below(READ_PATHS.len())];
                    get(Sender::Forged(format!("id={value}")), path.to_owned())
                }
            };
            plan.steps.push(step);
        }
        plan
    }

    fn jars(&self) -> usize {
        self.browser_pool + self.user_pool
    }
}

// ---------------------------------------------------------------------------------------------
// Policies and stores

/// One way to run sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    ServerAlways,
    SaveEveryRequest,
    Default,
}

impl Policy {
    pub(crate) const ALL: [Policy; 3] = [
        Policy::ServerAlways,
        Policy::SaveEveryRequest,
        Policy::Default,
    ];

    pub(crate) fn title(self) -> &'static str {
        match self {
            Policy::ServerAlways => "server-side always",
            Policy::SaveEveryRequest => "save every request",
            Policy::Default => "tidysession default",
        }
    }

    /// For file names, schemas, tables and prefixes.
    fn slug(self) -> &'static str {
        match self {
            Policy::ServerAlways => "server_always",
            Policy::SaveEveryRequest => "save_every",
            Policy::Default => "default",
        }
    }

    fn config(self, keys: KeyRing) -> SessionConfig {
        let config = SessionConfig::default().with_secure(false).with_keys(keys);
        match self {
            Policy::ServerAlways => config.with_anonymous(Anonymous::OnServer),
            Policy::SaveEveryRequest => config
                .with_anonymous(Anonymous::OnServer)
                .with_save_every_request(true),
            Policy::Default => config.with_anonymous(Anonymous::InCookie),
        }
    }
}

/// Where each policy's fresh store comes from.
#[derive(Debug)]
pub(crate) enum Target {
    /// One SQLite file per policy in this directory (kept while the value lives).
    TempSqlite(tempfile::TempDir),
    /// One SQLite file per policy next to this path.
    SqliteFiles(PathBuf),
    SqliteMemory,
    Memory,
    /// A server store; each policy gets its own namespace under this URL.
    Server(String),
}

impl Target {
    pub(crate) fn parse(url: Option<&str>) -> anyhow::Result<Self> {
        let Some(url) = url else {
            let dir = tempfile::Builder::new()
                .prefix("tidysession-simulate-")
                .tempdir()
                .context("making a temporary directory for the SQLite files")?;
            return Ok(Target::TempSqlite(dir));
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            bail!(
                "unsupported store URL {:?}: expected sqlite://PATH, sqlite://:memory:, memory://, \
                 postgres://…, mysql://… or redis://…",
                tidysession::store::redact_url(url)
            );
        };
        Ok(match scheme {
            "memory" if rest.is_empty() => Target::Memory,
            "sqlite" if rest == ":memory:" => Target::SqliteMemory,
            "sqlite" if !rest.is_empty() => {
                let path = PathBuf::from(rest);
                for policy in Policy::ALL {
                    let file = sqlite_file(&path, policy);
                    if file.exists() {
                        bail!(
                            "{} already exists: simulate needs a fresh database per policy; \
                             remove it or choose another --store path",
                            file.display()
                        );
                    }
                }
                Target::SqliteFiles(path)
            }
            "postgres" | "postgresql" | "mysql" | "redis" | "redis+cluster" if !rest.is_empty() => {
                Target::Server(url.to_owned())
            }
            _ => bail!(
                "unsupported store URL {:?}: simulate takes sqlite://PATH, sqlite://:memory:, \
                 memory://, or a PostgreSQL, MySQL or Redis URL (each policy then gets a fresh \
                 schema=, table= or prefix= of its own)",
                tidysession::store::redact_url(url)
            ),
        })
    }

    fn describe(&self) -> String {
        match self {
            Target::TempSqlite(_) => {
                "SQLite, a fresh file per policy in a temporary directory".into()
            }
            Target::SqliteFiles(p) => {
                format!("SQLite, one file per policy next to {}", p.display())
            }
            Target::SqliteMemory => "SQLite in memory, a fresh database per policy".into(),
            Target::Memory => "memory, a fresh store per policy".into(),
            Target::Server(url) => format!(
                "{}, a fresh namespace per policy",
                tidysession::store::redact_url(url)
            ),
        }
    }

    /// A fresh, migrated, empty store for `policy`, and the SQLite file behind it if any.
    async fn open(
        &self,
        policy: Policy,
    ) -> anyhow::Result<(Arc<dyn SessionStore>, Option<PathBuf>)> {
        let sqlite = |path: PathBuf| async move {
            let store = tidysession::store::SqliteStore::open(&path.to_string_lossy())
                .await
                .with_context(|| format!("opening {}", path.display()))?;
            store
                .migrate()
                .await
                .with_context(|| format!("migrating {}", path.display()))?;
            anyhow::Ok((Arc::new(store) as Arc<dyn SessionStore>, Some(path)))
        };
        let (store, file) = match self {
            Target::TempSqlite(dir) => {
                sqlite(dir.path().join(format!("{}.db", policy.slug()))).await?
            }
            Target::SqliteFiles(path) => sqlite(sqlite_file(path, policy)).await?,
            Target::SqliteMemory => (super::open_migrated_store("sqlite://:memory:").await?, None),
            Target::Memory => (
                Arc::new(tidysession::store::MemoryStore::default()) as Arc<dyn SessionStore>,
                None,
            ),
            Target::Server(url) => (
                super::open_migrated_store(&namespaced(url, policy)).await?,
                None,
            ),
        };
        let counts = store
            .count(OffsetDateTime::now_utc())
            .await
            .context("counting the store's sessions")?;
        if counts.live + counts.expired > 0 {
            bail!(
                "the store for {} already holds {} sessions: simulate needs an empty store per \
                 policy (a fresh schema=, table= or prefix=)",
                policy.title(),
                counts.live + counts.expired
            );
        }
        Ok((store, file))
    }
}

/// `sessions.db` → `sessions-default.db`.
fn sqlite_file(path: &Path, policy: Policy) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "simulate".into(), |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{}.{}", policy.slug(), ext.to_string_lossy()),
        None => format!("{stem}-{}", policy.slug()),
    };
    path.with_file_name(name)
}

/// The server URL with this policy's own schema (PostgreSQL), table (MySQL) or key prefix
/// (Redis): the one given plus the policy's name, or `tidysession_sim_<policy>`.
fn namespaced(url: &str, policy: Policy) -> String {
    let param = match url.split_once("://").map(|(s, _)| s) {
        Some("postgres" | "postgresql") => "schema",
        Some("mysql") => "table",
        _ => "prefix",
    };
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut given = None;
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if k == param => given = Some(v),
            _ => kept.push(pair),
        }
    }
    let value = match (param, given) {
        ("prefix", Some(p)) => format!("{p}{}:", policy.slug()),
        ("prefix", None) => format!("tidysession_sim:{}:", policy.slug()),
        (_, Some(name)) => format!("{name}_{}", policy.slug()),
        (_, None) => format!("tidysession_sim_{}", policy.slug()),
    };
    let own = format!("{param}={value}");
    kept.push(&own);
    format!("{base}?{}", kept.join("&"))
}

// ---------------------------------------------------------------------------------------------
// Running

/// What one policy did and left behind.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) policy: Policy,
    /// Every store operation.
    pub(crate) counts: OpCounts,
    /// Store operations per kind of traffic.
    pub(crate) by_traffic: [OpCounts; 5],
    /// Live records at the end.
    pub(crate) rows: u64,
    /// Bytes of session data at rest, where the store can tell cheaply.
    pub(crate) bytes: Option<u64>,
    /// (requests sent, live records) along the way.
    pub(crate) samples: Vec<(u64, u64)>,
    pub(crate) elapsed: Duration,
}

/// Every policy's outcome over one plan.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) plan: Plan,
    pub(crate) store: String,
    pub(crate) outcomes: Vec<Outcome>,
}

pub(crate) async fn simulate(
    plan: &Plan,
    target: &Target,
    users: &Users,
) -> anyhow::Result<Report> {
    let mut outcomes = Vec::new();
    for policy in Policy::ALL {
        let (store, file) = target.open(policy).await?;
        let outcome = run_policy(plan, policy, store, file.as_deref(), users.clone())
            .await
            .with_context(|| format!("simulating {}", policy.title()))?;
        outcomes.push(outcome);
    }
    Ok(Report {
        plan: plan.clone(),
        store: target.describe(),
        outcomes,
    })
}

/// A visitor's cookies: the latest value of each cookie a response set, dropped on removal.
#[derive(Debug, Default, Clone)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn header(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            self.0
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn take(&mut self, set_cookie: &str) {
        let mut parts = set_cookie.split(';').map(str::trim);
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let removal = value.is_empty()
            || parts.any(|a| {
                a.split_once('=').is_some_and(|(k, v)| {
                    k.eq_ignore_ascii_case("max-age") && v.trim().starts_with(['0', '-'])
                })
            });
        if removal {
            self.0.remove(name);
        } else {
            self.0.insert(name.to_owned(), value.to_owned());
        }
    }
}

fn diff(after: OpCounts, before: OpCounts) -> OpCounts {
    OpCounts {
        loads: after.loads - before.loads,
        creates: after.creates - before.creates,
        updates: after.updates - before.updates,
        touches: after.touches - before.touches,
        renames: after.renames - before.renames,
        deletes: after.deletes - before.deletes,
    }
}

fn add(into: &mut OpCounts, d: OpCounts) {
    into.loads += d.loads;
    into.creates += d.creates;
    into.updates += d.updates;
    into.touches += d.touches;
    into.renames += d.renames;
    into.deletes += d.deletes;
}

async fn run_policy(
    plan: &Plan,
    policy: Policy,
    inner: Arc<dyn SessionStore>,
    sqlite_file: Option<&Path>,
    users: Users,
) -> anyhow::Result<Outcome> {
    let store = Arc::new(CountingStore::new(inner));
    let keys = KeyRing::generate(1).context("generating a key")?;
    let app = router_with(store.clone(), users, keys.clone(), policy.config(keys));
    let mut jars = vec![Jar::default(); plan.jars()];
    let mut by_traffic = [OpCounts::default(); 5];
    let every = (plan.steps.len() / 200).max(1);
    let mut samples = vec![(0, 0)];
    let started = Instant::now();
    for (i, step) in plan.steps.iter().enumerate() {
        let cookie = match &step.sender {
            Sender::Nobody => None,
            Sender::Forged(c) => Some(c.clone()),
            Sender::Jar(j) => jars[*j].header(),
        };
        let mut req = Request::builder().method(step.method).uri(&step.path);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let body = match &step.form {
            Some(f) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(f.clone())
            }
            None => Body::empty(),
        };
        let req = req.body(body).context("building a request")?;
        let before = store.counts();
        let res = app
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|never| match never {});
        add(
            &mut by_traffic[step.traffic.index()],
            diff(store.counts(), before),
        );
        let status = res.status();
        // A bot's or a forged cookie's responses go nowhere.
        if let Sender::Jar(j) = step.sender {
            for value in res.headers().get_all(header::SET_COOKIE) {
                if let Ok(v) = value.to_str() {
                    jars[j].take(v);
                }
            }
        }
        // Every planned request is one the demo accepts; anything else is a bug worth stopping for.
        let expected = if step.method == "POST" { 303 } else { 200 };
        if status.as_u16() != expected {
            let body = axum::body::to_bytes(res.into_body(), 4096)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            bail!(
                "request {} ({} {} {}) answered {status}, expected {expected}: {}",
                i + 1,
                step.traffic.name(),
                step.method,
                step.path,
                body.trim()
            );
        }
        if step.login {
            if let Sender::Jar(j) = step.sender {
                if !jars[j].0.contains_key("id") {
                    bail!("request {}: a login set no session cookie", i + 1);
                }
            }
        }
        if (i + 1) % every == 0 || i + 1 == plan.steps.len() {
            let live = store
                .count(OffsetDateTime::now_utc())
                .await
                .context("counting sessions")?
                .live;
            samples.push(((i + 1) as u64, live));
        }
    }
    let elapsed = started.elapsed();
    let rows = samples.last().map_or(0, |s| s.1);
    let bytes = match sqlite_file {
        Some(path) => Some(sqlite_bytes(path).await?),
        None => None,
    };
    Ok(Outcome {
        policy,
        counts: store.counts(),
        by_traffic,
        rows,
        bytes,
        samples,
        elapsed,
    })
}

/// Bytes of session data in a SQLite file.
async fn sqlite_bytes(path: &Path) -> anyhow::Result<u64> {
    use sqlx::Connection as _;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let (bytes,): (i64,) =
        sqlx::query_as("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM tidysession_sessions")
            .fetch_one(&mut conn)
            .await
            .with_context(|| format!("measuring {}", path.display()))?;
    let _ = conn.close().await;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

// ---------------------------------------------------------------------------------------------
// Output

impl Report {
    /// The plain table `simulate` prints.
    pub(crate) fn table(&self) -> String {
        let p = &self.plan;
        let r = |t: Traffic| p.requests[t.index()];
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} requests per policy (seed {}), store: {}",
            p.steps.len(),
            p.seed,
            self.store
        );
        let _ = writeln!(
            out,
            "traffic: {} health checks; {} cookie-less bot requests ({} cart adds); \
             {} browser requests from {} visitors ({} added to a cart); {} requests from {} users \
             ({} logged in); {} stale or forged cookies ({} of them session ids)",
            r(Traffic::Health),
            r(Traffic::Bots),
            p.bot_cart_adds,
            r(Traffic::Browsers),
            p.browser_pool,
            p.browsers_with_cart,
            r(Traffic::Users),
            p.user_pool,
            p.logged_in,
            r(Traffic::Stale),
            p.stale_ids,
        );
        let _ = writeln!(out);
        let mut rows: Vec<(String, Vec<String>)> = Vec::new();
        let mut row = |label: &str, f: &dyn Fn(&Outcome) -> String| {
            rows.push((label.to_owned(), self.outcomes.iter().map(f).collect()));
        };
        row("", &|o| o.policy.title().to_owned());
        row("rows at the end", &|o| o.rows.to_string());
        row("creates", &|o| o.counts.creates.to_string());
        row("updates", &|o| o.counts.updates.to_string());
        row("touches", &|o| o.counts.touches.to_string());
        row("renames", &|o| o.counts.renames.to_string());
        row("deletes", &|o| o.counts.deletes.to_string());
        row("loads", &|o| o.counts.loads.to_string());
        row("bytes at rest", &|o| {
            o.bytes.map_or_else(|| "n/a".to_owned(), |b| b.to_string())
        });
        row("store ops: health", &|o| {
            o.by_traffic[0].total().to_string()
        });
        row("store ops: bots", &|o| o.by_traffic[1].total().to_string());
        row("store ops: browsers", &|o| {
            o.by_traffic[2].total().to_string()
        });
        row("store ops: users", &|o| o.by_traffic[3].total().to_string());
        row("store ops: stale", &|o| o.by_traffic[4].total().to_string());
        row("seconds", &|o| format!("{:.1}", o.elapsed.as_secs_f64()));
        let label_width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let widths: Vec<usize> = (0..self.outcomes.len())
            .map(|i| rows.iter().map(|(_, v)| v[i].len()).max().unwrap_or(0))
            .collect();
        for (label, values) in &rows {
            let _ = write!(out, "{label:<label_width$}");
            for (v, w) in values.iter().zip(&widths) {
                let _ = write!(out, "  {v:>w$}");
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "logged-in users: {}; anonymous writers: {} (bot cart adds {} + browsers with a cart {})",
            p.logged_in,
            p.bot_cart_adds + p.browsers_with_cart,
            p.bot_cart_adds,
            p.browsers_with_cart
        );
        out
    }

    /// Rows over time, one line per policy, as a small standalone SVG.
    pub(crate) fn svg(&self) -> String {
        const W: f64 = 720.0;
        const H: f64 = 400.0;
        const LEFT: f64 = 70.0;
        const RIGHT: f64 = 20.0;
        const TOP: f64 = 40.0;
        const BOTTOM: f64 = 50.0;
        const STYLES: [(&str, &str); 3] = [
            ("#d62728", ""),
            ("#ff7f0e", " stroke-dasharray=\"6 4\""),
            ("#1f77b4", ""),
        ];
        let max_x = (self.plan.steps.len() as u64).max(1);
        let max_rows = self
            .outcomes
            .iter()
            .flat_map(|o| o.samples.iter().map(|s| s.1))
            .max()
            .unwrap_or(0);
        let max_y = nice_ceiling(max_rows.max(5));
        let x = |v: u64| LEFT + (W - LEFT - RIGHT) * v as f64 / max_x as f64;
        let y = |v: u64| H - BOTTOM - (H - TOP - BOTTOM) * v as f64 / max_y as f64;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
             viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">"
        );
        let _ = writeln!(s, "<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>");
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">Session rows in the \
             store over {} requests (seed {})</text>",
            W / 2.0,
            max_x,
            self.plan.seed
        );
        // Grid and axes.
        for i in 0..=5u64 {
            let vy = max_y * i / 5;
            let py = y(vy);
            let _ = writeln!(
                s,
                "<line x1=\"{LEFT}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{vy}</text>",
                W - RIGHT,
                LEFT - 6.0,
                py + 4.0
            );
            let vx = max_x * i / 5;
            let px = x(vx);
            let _ = writeln!(
                s,
                "<line x1=\"{px:.1}\" y1=\"{:.1}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>\
                 <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{vx}</text>",
                H - BOTTOM,
                H - BOTTOM + 5.0,
                H - BOTTOM + 18.0
            );
        }
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{:.1}\" stroke=\"#333\"/>\
             <line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>",
            H - BOTTOM,
            H - BOTTOM,
            W - RIGHT,
            H - BOTTOM
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">requests</text>\
             <text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">live rows</text>",
            LEFT + (W - LEFT - RIGHT) / 2.0,
            H - 12.0,
            TOP + (H - TOP - BOTTOM) / 2.0,
            TOP + (H - TOP - BOTTOM) / 2.0
        );
        // One line per policy, and the legend.
        for (i, o) in self.outcomes.iter().enumerate() {
            let (color, dash) = STYLES[i % STYLES.len()];
            let points: Vec<String> = o
                .samples
                .iter()
                .map(|&(vx, vy)| format!("{:.1},{:.1}", x(vx), y(vy)))
                .collect();
            let _ = writeln!(
                s,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash} points=\"{}\"/>",
                points.join(" ")
            );
            let ly = TOP + 12.0 + 18.0 * i as f64;
            let _ = writeln!(
                s,
                "<line x1=\"{:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" \
                 stroke-width=\"2\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\">{}: {} rows</text>",
                LEFT + 12.0,
                LEFT + 40.0,
                LEFT + 46.0,
                ly + 4.0,
                o.policy.title(),
                o.rows
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// The smallest 1, 2 or 5 × 10ⁿ at least `v`.
fn nice_ceiling(v: u64) -> u64 {
    let mut scale = 1u64;
    loop {
        for m in [1, 2, 5] {
            if let Some(c) = scale.checked_mul(m) {
                if c >= v {
                    return c;
                }
            } else {
                return v;
            }
        }
        scale = match scale.checked_mul(10) {
            Some(s) => s,
            None => return v,
        };
    }
}

#[cfg(test)]
mod tests;
