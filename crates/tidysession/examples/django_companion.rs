//! A Rust service beside a Django app: one database, one secret, one login.
//!
//! ```text
//! DJANGO_SECRET_KEY=… [DJANGO_SECRET_KEY_FALLBACKS=old1,old2] \
//!   cargo run --release --features django,postgres --example django_companion -- \
//!   --database postgres://app@127.0.0.1/app --addr 127.0.0.1:8001 [--secure-cookie]
//! ```
//!
//! Sessions live in Django's `django_session` table ([`DjangoStore`] with
//! [`SessionConfig::django`]), users come from Django's `auth_user` ([`DjangoUsers`]), and
//! logins carry Django's `_auth_user_hash`: a visitor logged in on either side is logged in on
//! both (when both are served under one host name, so the browser sends the same `sessionid`
//! cookie to both).
//!
//! | route | what it does |
//! |---|---|
//! | `GET /whoami` | `{"user": "name"}` or `{"user": null}` |
//! | `GET /session/get?key=K` | `{"value": …}`: the session's value under `K` (`null` if none) |
//! | `GET /session/set?key=K&value=V` | stores the text `V` under `K` (or, with `json=J` instead of `value`, the JSON value `J`) |
//! | `POST /login` | form `username`, `password`: `200 {"user": …}` or `401` |
//! | `POST /logout` | logs out on both sides: `{"user": null}` |
//!
//! The cookie is not `Secure` by default, as with Django's `SESSION_COOKIE_SECURE = False`;
//! pass `--secure-cookie` when served over HTTPS (always, in production). Like any example it
//! has no CSRF protection: put it behind the same CSRF defence as the Django app before
//! exposing `POST` routes.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{Form, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tidysession::auth::{AuthError, AuthLayer, DjangoUsers};
use tidysession::store::DjangoStore;
use tidysession::{Session, SessionConfig, SessionError, SessionLayer};

type AuthSession = tidysession::auth::AuthSession<DjangoUsers>;

struct Args {
    database: String,
    addr: SocketAddr,
    secure_cookie: bool,
}

const USAGE: &str = "usage: django_companion --database URL --addr HOST:PORT [--secure-cookie]
  URL: postgres://…, mysql://… or sqlite://PATH (optionally prefixed django+), the Django app's database
  environment: DJANGO_SECRET_KEY (required), DJANGO_SECRET_KEY_FALLBACKS (comma-separated)";

fn parse_args() -> Result<Args, String> {
    let mut database = None;
    let mut addr = None;
    let mut secure_cookie = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--database" => database = args.next(),
            "--addr" => {
                let text = args.next().ok_or("--addr needs a value")?;
                addr = Some(text.parse().map_err(|e| format!("--addr {text}: {e}"))?);
            }
            "--secure-cookie" => secure_cookie = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        database: database.ok_or("--database is required")?,
        addr: addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8001))),
        secure_cookie,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("django_companion: {message}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let secrets = DjangoStore::secrets_from_env()?;
    let store = DjangoStore::connect(&args.database, secrets).await?;
    let users = DjangoUsers::from_store(&store)?;
    let config = SessionConfig::django().with_secure(args.secure_cookie);
    let app = router(users, store, config);
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    eprintln!(
        "django_companion: listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

/// The routes, behind the session and auth layers (the interop tests serve this in process).
pub fn router(users: DjangoUsers, store: DjangoStore, config: SessionConfig) -> Router {
    let hash = users.auth_hash();
    Router::new()
        .route("/whoami", get(whoami))
        .route("/session/get", get(session_get))
        .route("/session/set", get(session_set))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(AuthLayer::with_hash(users, hash))
        .layer(SessionLayer::new(store).with_config(config))
}

async fn whoami(auth: AuthSession) -> Result<Json<Value>, AuthError> {
    let user = auth.user().await?;
    Ok(Json(json!({ "user": user.map(|u| u.username) })))
}

async fn session_get(
    session: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, SessionError> {
    let Some(key) = q.get("key") else {
        return Ok((StatusCode::BAD_REQUEST, "missing key").into_response());
    };
    let value: Option<Value> = session.get(key).await?;
    Ok(Json(json!({ "value": value })).into_response())
}

async fn session_set(
    session: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, SessionError> {
    let value = match (q.get("value"), q.get("json")) {
        (Some(text), None) => Value::from(text.as_str()),
        (None, Some(json)) => match serde_json::from_str(json) {
            Ok(value) => value,
            Err(e) => return Ok((StatusCode::BAD_REQUEST, format!("json: {e}")).into_response()),
        },
        _ => return Ok((StatusCode::BAD_REQUEST, "give value or json").into_response()),
    };
    let Some(key) = q.get("key") else {
        return Ok((StatusCode::BAD_REQUEST, "missing key").into_response());
    };
    session.insert(key, &value).await?;
    Ok(Json(json!({ "value": value })).into_response())
}

async fn login(
    auth: AuthSession,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, AuthError> {
    let (Some(username), Some(password)) = (form.get("username"), form.get("password")) else {
        return Ok((StatusCode::BAD_REQUEST, "username and password").into_response());
    };
    let user = auth
        .backend()
        .authenticate(username, password)
        .await
        .map_err(AuthError::Store)?;
    let Some(user) = user else {
        return Ok((StatusCode::UNAUTHORIZED, Json(json!({ "user": null }))).into_response());
    };
    auth.login(&user).await?;
    Ok(Json(json!({ "user": user.username })).into_response())
}

async fn logout(auth: AuthSession) -> Json<Value> {
    auth.logout().await;
    Json(json!({ "user": null }))
}
