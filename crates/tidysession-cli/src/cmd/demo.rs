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
//! | `POST /login` | checks the password, cycles the id, stores the user; 303 or 401 |
//! | `POST /logout` | flushes; 303 |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tidysession::store::SessionStore;
use tidysession::{Session, SessionConfig, SessionError, SessionLayer};

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
}

/// The most items a cart holds, and the longest item name: bounds on what a visitor can make
/// the server store.
const MAX_CART: usize = 50;
const MAX_ITEM_LEN: usize = 64;

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let store = super::open_migrated_store(&args.store).await?;
    let users = tokio::task::spawn_blocking(move || Users::demo(args.seed_users))
        .await
        .context("hashing demo passwords")??;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("listening on {}", args.addr))?;
    println!(
        "tidysession demo on http://{} (store: {}; users: alice, bob{}; password: password)",
        listener.local_addr()?,
        tidysession::store::redact_url(&args.store),
        match args.seed_users {
            0 => String::new(),
            n => format!(", user1…user{n}"),
        }
    );
    axum::serve(listener, router(store, Arc::new(users)))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving the demo")
}

/// The demo's routes behind the session layer. Cookies are not `Secure` because the demo
/// serves plain http on loopback.
pub(crate) fn router(store: Arc<dyn SessionStore>, users: Arc<Users>) -> Router {
    let config = SessionConfig::default().with_secure(false);
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/", get(home))
        .route("/whoami", get(whoami))
        .route("/cart", get(cart))
        .route("/cart/add", get(cart_add_link).post(cart_add_form))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .with_state(users)
        .layer(SessionLayer::from_arc(store).with_config(config))
}

/// Demo accounts: name → argon2 hash of the password.
#[derive(Debug)]
pub(crate) struct Users {
    hashes: HashMap<String, String>,
    /// Verified against for unknown names, so they take as long as known ones.
    decoy: String,
}

impl Users {
    /// `alice` and `bob`, plus `user1…userN`, all with password `password`. The seeded users
    /// share one hash so that seeding thousands stays fast; alice and bob get their own.
    pub(crate) fn demo(seed: u32) -> anyhow::Result<Self> {
        let hash = |pw: &str| -> anyhow::Result<String> {
            let salt = SaltString::generate(&mut password_hash::rand_core::OsRng);
            Ok(Argon2::default()
                .hash_password(pw.as_bytes(), &salt)
                .map_err(|e| anyhow::anyhow!("hashing a demo password: {e}"))?
                .to_string())
        };
        let mut hashes = HashMap::new();
        hashes.insert("alice".to_owned(), hash("password")?);
        hashes.insert("bob".to_owned(), hash("password")?);
        if seed > 0 {
            let shared = hash("password")?;
            hashes.extend((1..=seed).map(|i| (format!("user{i}"), shared.clone())));
        }
        Ok(Self {
            hashes,
            decoy: hash("decoy password")?,
        })
    }

    fn verify(&self, name: &str, password: &str) -> bool {
        let (known, stored) = match self.hashes.get(name) {
            Some(h) => (true, h.as_str()),
            None => (false, self.decoy.as_str()),
        };
        let ok = PasswordHash::new(stored)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        known && ok
    }
}

async fn user(session: &Session) -> Result<Option<String>, SessionError> {
    session.get("user").await
}

async fn cart_items(session: &Session) -> Result<Vec<String>, SessionError> {
    Ok(session.get("cart").await?.unwrap_or_default())
}

async fn home(session: Session) -> Result<Html<String>, SessionError> {
    let user = user(&session).await?;
    let cart = cart_items(&session).await?;
    let who = match &user {
        Some(name) => format!(
            "Logged in as <b>{}</b>. <form method=post action=/logout><button>Log out</button></form>",
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

async fn whoami(session: Session) -> Result<Json<serde_json::Value>, SessionError> {
    Ok(Json(json!({ "user": user(&session).await? })))
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

async fn login(
    session: Session,
    State(users): State<Arc<Users>>,
    Form(form): Form<Login>,
) -> Result<Response, SessionError> {
    let name = form.username.clone();
    let ok = tokio::task::spawn_blocking(move || users.verify(&form.username, &form.password))
        .await
        .unwrap_or(false);
    if !ok {
        let page = login_form("Wrong username or password.");
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    }
    if session.test_cookie_worked() {
        session.delete_test_cookie();
    }
    if user(&session).await?.is_some_and(|current| current != name) {
        // Another user's session in this browser: start clean, keep nothing of theirs.
        session.flush();
    } else {
        // A new id at login: an id planted before login is worthless after it.
        session.cycle_id().await?;
    }
    session.insert("user", &name).await?;
    Ok(Redirect::to("/").into_response())
}

async fn logout(session: Session) -> Redirect {
    session.flush();
    Redirect::to("/")
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
