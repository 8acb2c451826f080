//! `tidysession demo`: a small shop with a cart and a login, served through `SessionLayer`.
//!
//! Its routes are stable; tests, benchmarks and `simulate` rely on them:
//!
//! | route | what it does with the session |
//! |---|---|
//! | `GET /health` | nothing, ever |
//! | `GET /` | reads: login state and cart size |
//! | `GET /whoami` | reads: `{"user": name}` or `{"user": null}` |
//! | `GET /cart/add?item=X`, `POST /cart/add` | writes: adds to the cart |
//! | `GET /cart` | reads: the cart as JSON |
//! | `GET /login` | sets the test cookie (a cookie, not a record) |
//! | `POST /login` | checks the password, logs in (new id, cart kept); 303 or 401 |
//! | `POST /logout` | logs out (flushes); 303 |
//! | `GET /account/sessions` | the user's sessions, each with a revoke button |
//! | `POST /account/sessions/revoke` | form `id`: a listed session's handle, or `all` for every other session; 303 |
//! | `POST /account/password` | form `password`: changes it, logs out the other sessions; 303 |
//! | `GET /metrics` | nothing, ever: the [metrics](tidysession::metrics) in Prometheus text format (served by `run` only, outside the session layer) |
//!
//! `run` also keeps a [`Reaper`] deleting expired sessions every minute on SQL stores, and
//! stops it on shutdown.
//!
//! Anonymous visitors' data (the cart) lives sealed in their cookie: it reaches the store only
//! at login. With a `django+` store URL (Django's `django_session` table, secret from
//! `DJANGO_SECRET_KEY`) the demo uses [`SessionConfig::django`] instead: cookie `sessionid`,
//! every session on the server, as Django expects. Login state goes through [`tidysession::auth`]. The session auth hash is keyed by the key ring
//! in `TIDYSESSION_KEYS`, or else by one generated on first start and kept in `--keys-file`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{Form, Query};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use serde_json::json;
use tidysession::auth::{AuthBackend, AuthError, AuthLayer, AuthUser, ClientAddress};
use tidysession::reaper::Reaper;
use tidysession::store::SessionStore;
use tidysession::{store::IdFormat, KeyRing, Session, SessionConfig, SessionError, SessionLayer};

type AuthSession = tidysession::auth::AuthSession<Users>;

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(long, env = "TIDYSESSION_STORE", default_value = "sqlite://tidysession.db", help = super::store_help())]
    store: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Also create users user1…userN (password `password`).
    #[arg(long, default_value_t = 0)]
    seed_users: u32,
    /// Where the generated key ring is kept when `TIDYSESSION_KEYS` is not set.
    #[arg(long, default_value = "tidysession.keys")]
    keys_file: PathBuf,
}

/// The most items a cart holds, and the longest item name: bounds on what a visitor can make
/// the server store.
const MAX_CART: usize = 50;
const MAX_ITEM_LEN: usize = 64;
/// The longest password the demo hashes.
const MAX_PASSWORD_LEN: usize = 1024;

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let store = super::open_migrated_store(&args.store).await?;
    let keys = key_ring(&args.keys_file)?;
    let users = tokio::task::spawn_blocking(move || Users::demo(args.seed_users))
        .await
        .context("hashing demo passwords")??;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("listening on {}", args.addr))?;
    println!(
        "tidysession demo on http://{} (store: {}; users: alice, bob{}; password: password)",
        listener.local_addr()?,
        tidysession::tooling::redact_url(&args.store),
        match args.seed_users {
            0 => String::new(),
            n => format!(", user1…user{n}"),
        }
    );
    let metrics = install_metrics()?;
    // SQL stores keep expired rows until something deletes them; Redis expires its own.
    let reaper = if store
        .maintenance()
        .is_none_or(|m| m.removes_expired_itself())
    {
        None
    } else {
        let reaper = Reaper::from_arc(store.clone()).with_interval(REAPER_INTERVAL);
        Some(reaper.spawn().context("starting the session reaper")?)
    };
    let app = router(store, users, keys).merge(metrics_route(metrics));
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("serving the demo");
    if let Some(reaper) = reaper {
        reaper.shutdown().await;
    }
    served
}

/// How often the demo's reaper deletes expired sessions (jittered by ±10 %).
const REAPER_INTERVAL: Duration = Duration::from_secs(60);

/// Installs the process's Prometheus recorder (once; later calls return the same handle)
/// and keeps its histograms drained.
pub(crate) fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
        )
        .context("configuring the metrics buckets")?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    tidysession::metrics::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// `GET /metrics` in Prometheus text format. Outside the session layer: scraping never
/// touches a session.
pub(crate) fn metrics_route(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let text = handle.render();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    )
}

/// The key ring from `TIDYSESSION_KEYS`; else the one in `file`, made on first start.
fn key_ring(file: &Path) -> anyhow::Result<KeyRing> {
    if let Ok(text) = std::env::var("TIDYSESSION_KEYS") {
        return text.parse().context("reading TIDYSESSION_KEYS");
    }
    match std::fs::read_to_string(file) {
        Ok(text) => text
            .parse()
            .with_context(|| format!("reading the key ring in {}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let ring = KeyRing::generate(1)?;
            write_secret(file, &ring.to_config())
                .with_context(|| format!("keeping a new key ring in {}", file.display()))?;
            Ok(ring)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// Writes a new file only its owner can read; never replaces an existing one.
fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// The demo's routes behind the session layer. Cookies are not `Secure` because the demo
/// serves plain http on loopback.
pub(crate) fn router(store: Arc<dyn SessionStore>, users: Users, keys: KeyRing) -> Router {
    // A store shared with Django (a `django+` URL) gets Django's cookie defaults: cookie
    // `sessionid`, every session on the server.
    let config = match store.id_format() {
        IdFormat::Django => SessionConfig::django(),
        _ => SessionConfig::default(),
    }
    .with_secure(false)
    .with_keys(keys.clone());
    router_with(store, users, keys, config)
}

/// The demo's routes with another session configuration (`simulate` compares policies).
pub(crate) fn router_with(
    store: Arc<dyn SessionStore>,
    users: Users,
    keys: KeyRing,
    config: SessionConfig,
) -> Router {
    let auth = AuthLayer::new(users, keys).with_client_metadata(ClientAddress::Peer);
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/", get(home))
        .route("/whoami", get(whoami))
        .route("/cart", get(cart))
        .route("/cart/add", get(cart_add_link).post(cart_add_form))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/account/sessions", get(account_sessions))
        .route("/account/sessions/revoke", axum::routing::post(revoke))
        .route("/account/password", axum::routing::post(change_password))
        .layer(auth)
        .layer(SessionLayer::from_arc(store).with_config(config))
}

/// Demo accounts: name → argon2 hash of the password. Cheap to clone; clones share the
/// accounts.
#[derive(Debug, Clone)]
pub(crate) struct Users(Arc<Accounts>);

#[derive(Debug)]
struct Accounts {
    hashes: RwLock<HashMap<String, String>>,
    /// Verified against for unknown names, so they take as long as known ones.
    decoy: String,
}

/// A demo user: the name is the id; the password hash is the credential fingerprint, so a
/// password change logs out every other session.
#[derive(Debug, Clone)]
pub(crate) struct User {
    name: String,
    hash: String,
}

impl AuthUser for User {
    type Id = String;
    fn id(&self) -> String {
        self.name.clone()
    }
    fn credential_fingerprint(&self) -> &[u8] {
        self.hash.as_bytes()
    }
}

impl AuthBackend for Users {
    type User = User;
    type Error = std::convert::Infallible;
    async fn user(&self, name: &String) -> Result<Option<User>, Self::Error> {
        Ok(self.get(name))
    }
}

fn hash_password(pw: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut password_hash::rand_core::OsRng);
    Ok(Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?
        .to_string())
}

impl Users {
    /// `alice` and `bob`, plus `user1…userN`, all with password `password`. The seeded users
    /// share one hash so that seeding thousands stays fast; alice and bob get their own.
    pub(crate) fn demo(seed: u32) -> anyhow::Result<Self> {
        let mut hashes = HashMap::new();
        hashes.insert("alice".to_owned(), hash_password("password")?);
        hashes.insert("bob".to_owned(), hash_password("password")?);
        if seed > 0 {
            let shared = hash_password("password")?;
            hashes.extend((1..=seed).map(|i| (format!("user{i}"), shared.clone())));
        }
        Ok(Self(Arc::new(Accounts {
            hashes: RwLock::new(hashes),
            decoy: hash_password("decoy password")?,
        })))
    }

    /// A copy whose accounts change independently of this one's.
    #[cfg(test)]
    pub(crate) fn fork(&self) -> Self {
        let hashes = self.hashes().clone();
        Self(Arc::new(Accounts {
            hashes: RwLock::new(hashes),
            decoy: self.0.decoy.clone(),
        }))
    }

    fn hashes(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, String>> {
        self.0.hashes.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, name: &str) -> Option<User> {
        self.hashes().get(name).map(|hash| User {
            name: name.to_owned(),
            hash: hash.clone(),
        })
    }

    /// The user, if the password is theirs. Slow (argon2): call it off the async threads.
    fn verify(&self, name: &str, password: &str) -> Option<User> {
        let user = self.get(name);
        let stored = user
            .as_ref()
            .map_or(self.0.decoy.as_str(), |u| u.hash.as_str());
        let ok = PasswordHash::new(stored)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        user.filter(|_| ok)
    }

    /// Gives `name` a new password; returns the user as they are now.
    fn set_password(&self, name: &str, password: &str) -> anyhow::Result<User> {
        let hash = hash_password(password)?;
        let mut hashes = self
            .0
            .hashes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let slot = hashes.get_mut(name).context("no such user")?;
        slot.clone_from(&hash);
        Ok(User {
            name: name.to_owned(),
            hash,
        })
    }
}

async fn user_name(auth: &AuthSession) -> Result<Option<String>, AuthError> {
    Ok(auth.user().await?.map(|u| u.name))
}

async fn cart_items(session: &Session) -> Result<Vec<String>, SessionError> {
    Ok(session.get("cart").await?.unwrap_or_default())
}

async fn home(auth: AuthSession) -> Result<Html<String>, AuthError> {
    let user = user_name(&auth).await?;
    let cart = cart_items(auth.session()).await?;
    let who = match &user {
        Some(name) => format!(
            "Logged in as <b>{}</b>. <a href=/account/sessions>Your sessions</a> \
             <form method=post action=/logout><button>Log out</button></form>",
            escape(name)
        ),
        None => "Not logged in. <a href=/login>Log in</a>".to_owned(),
    };
    Ok(Html(page(
        "tidysession demo",
        &format!(
            "<p>{who}</p><p>Cart: {} item(s). <a href=/cart>view</a></p>\
             <form method=post action=/cart/add><input name=item placeholder=item>\
             <button>Add to cart</button></form>",
            cart.len()
        ),
    )))
}

async fn whoami(auth: AuthSession) -> Result<Json<serde_json::Value>, AuthError> {
    Ok(Json(json!({ "user": user_name(&auth).await? })))
}

async fn cart(session: Session) -> Result<Json<Vec<String>>, SessionError> {
    Ok(Json(cart_items(&session).await?))
}

#[derive(Debug, Deserialize)]
struct Item {
    item: String,
}

/// Adds an item; `Err` carries the response for a bad item.
async fn add_item(
    session: &Session,
    item: &str,
) -> Result<Result<Vec<String>, Response>, SessionError> {
    let item = item.trim();
    if item.is_empty() || item.chars().count() > MAX_ITEM_LEN {
        let msg = format!("an item is 1 to {MAX_ITEM_LEN} characters");
        return Ok(Err((StatusCode::BAD_REQUEST, msg).into_response()));
    }
    let mut cart = cart_items(session).await?;
    if cart.len() >= MAX_CART {
        let msg = format!("the cart holds at most {MAX_CART} items");
        return Ok(Err((StatusCode::BAD_REQUEST, msg).into_response()));
    }
    cart.push(item.to_owned());
    session.insert("cart", &cart).await?;
    Ok(Ok(cart))
}

async fn cart_add_link(session: Session, Query(q): Query<Item>) -> Result<Response, SessionError> {
    Ok(match add_item(&session, &q.item).await? {
        Ok(cart) => Json(cart).into_response(),
        Err(bad) => bad,
    })
}

async fn cart_add_form(session: Session, Form(f): Form<Item>) -> Result<Response, SessionError> {
    Ok(match add_item(&session, &f.item).await? {
        Ok(_) => Redirect::to("/").into_response(),
        Err(bad) => bad,
    })
}

fn login_form(message: &str) -> Html<String> {
    Html(page(
        "Log in",
        &format!(
            "<p>{}</p><form method=post action=/login>\
             <input name=username placeholder=username> \
             <input name=password type=password placeholder=password> \
             <button>Log in</button></form>",
            escape(message)
        ),
    ))
}

async fn login_page(session: Session) -> Html<String> {
    session.set_test_cookie();
    login_form("Demo users: alice, bob (password: password)")
}

#[derive(Debug, Deserialize)]
struct Login {
    username: String,
    password: String,
}

async fn login(auth: AuthSession, Form(form): Form<Login>) -> Result<Response, AuthError> {
    let users = auth.backend().clone();
    let user = tokio::task::spawn_blocking(move || users.verify(&form.username, &form.password))
        .await
        .ok()
        .flatten();
    let Some(user) = user else {
        let page = login_form("Wrong username or password.");
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    };
    let session = auth.session();
    if session.test_cookie_worked() {
        session.delete_test_cookie();
    }
    auth.login(&user).await?;
    Ok(Redirect::to("/").into_response())
}

async fn logout(auth: AuthSession) -> Redirect {
    auth.logout().await;
    Redirect::to("/")
}

async fn account_sessions(auth: AuthSession) -> Result<Response, AuthError> {
    let Some(name) = user_name(&auth).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let when = |t: time::OffsetDateTime| {
        t.replace_nanosecond(0)
            .map_or_else(|_| t.to_string(), |t| t.to_string())
    };
    let rows: String = auth
        .sessions()
        .await?
        .iter()
        .map(|s| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>\
                 <form method=post action=/account/sessions/revoke>\
                 <input type=hidden name=id value=\"{}\"><button>Revoke</button></form></td></tr>",
                if s.current { "this session" } else { "" },
                when(s.created_at),
                s.last_seen.map(when).unwrap_or_default(),
                when(s.expires_at),
                escape(&format!(
                    "{} {}",
                    s.user_agent.as_deref().unwrap_or(""),
                    s.address.as_deref().unwrap_or("")
                )),
                escape(&s.handle),
            )
        })
        .collect();
    Ok(Html(page(
        "Your sessions",
        &format!(
            "<p>Logged in as <b>{}</b>. <a href=/>Home</a></p>\
             <table><tr><th></th><th>created</th><th>last seen</th><th>expires</th><th>client</th><th></th></tr>{rows}</table>\
             <form method=post action=/account/sessions/revoke><input type=hidden name=id value=all>\
             <button>Log out everywhere else</button></form>\
             <form method=post action=/account/password><input name=password type=password placeholder=\"new password\">\
             <button>Change password</button></form>",
            escape(&name)
        ),
    ))
    .into_response())
}

#[derive(Debug, Deserialize)]
struct Revoke {
    id: String,
}

async fn revoke(auth: AuthSession, Form(form): Form<Revoke>) -> Result<Response, AuthError> {
    if user_name(&auth).await?.is_none() {
        return Ok(Redirect::to("/login").into_response());
    }
    if form.id == "all" {
        auth.revoke_others().await?;
    } else {
        auth.revoke(&form.id).await?;
    }
    Ok(Redirect::to("/account/sessions").into_response())
}

#[derive(Debug, Deserialize)]
struct NewPassword {
    password: String,
}

async fn change_password(
    auth: AuthSession,
    Form(form): Form<NewPassword>,
) -> Result<Response, AuthError> {
    let Some(name) = user_name(&auth).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    if form.password.is_empty() || form.password.len() > MAX_PASSWORD_LEN {
        let msg = format!("a password is 1 to {MAX_PASSWORD_LEN} bytes");
        return Ok((StatusCode::BAD_REQUEST, msg).into_response());
    }
    let users = auth.backend().clone();
    let changed = tokio::task::spawn_blocking(move || users.set_password(&name, &form.password))
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
    match changed {
        Ok(user) => {
            auth.update_credentials(&user).await?;
            Ok(Redirect::to("/account/sessions").into_response())
        }
        Err(e) => {
            tracing::error!(error = %e, "changing a demo password");
            Ok(StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    )
}

fn escape(s: &str) -> String {
    s.chars()
        .fold(String::with_capacity(s.len()), |mut out, c| {
            match c {
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '&' => out.push_str("&amp;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
            out
        })
}

#[cfg(test)]
mod tests;
