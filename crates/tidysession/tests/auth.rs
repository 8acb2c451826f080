//! Login state through the real layers, on every store with a user index: fixation, switching
//! users, password changes, listing and revoking sessions, the cap per user, key rotation,
//! and what asking "who is this?" costs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::Query;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tidysession::auth::{AuthBackend, AuthError, AuthLayer, AuthSession, AuthUser, ClientAddress};
use tidysession::store::SessionStore;
use tidysession::tooling::CountingStore;
use tidysession::{KeyRing, SessionLayer};

use crate::util::{routes, Harness};
use tidysession::store::Maintenance as _;

/// Expands to the auth tests for the store `$make` builds, as `(store, guard)`.
macro_rules! auth_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::auth::auth_suite!(@cases $make;
                login_moves_the_session_to_a_new_id_and_keeps_anonymous_data,
                logging_in_as_another_user_keeps_nothing_of_the_first,
                password_change_logs_out_the_other_sessions_only,
                revoke_one_and_revoke_others,
                cap_per_user_evicts_the_oldest_at_login,
                listing_never_shows_expired_sessions,
                logout_removes_the_session_from_the_listing
            );
        }
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $make.await;
                $crate::auth::$case(std::sync::Arc::new(store)).await;
            }
        )*
    };
}
pub(crate) use auth_suite;

auth_suite!(memory, async {
    (tidysession::store::MemoryStore::default(), ())
});
auth_suite!(sqlite, async {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.db");
    let store = tidysession::store::SqliteStore::open(path.to_str().unwrap())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (store, dir)
});
#[cfg(feature = "postgres")]
auth_suite!(postgres, crate::util::servers::postgres());
#[cfg(feature = "mysql")]
auth_suite!(mysql, crate::util::servers::mysql());
#[cfg(feature = "redis")]
auth_suite!(redis, async { (crate::util::servers::redis().await, ()) });
#[cfg(feature = "redis")]
auth_suite!(redis_cluster, async {
    (crate::util::servers::redis_cluster().await, ())
});
#[cfg(feature = "cached")]
auth_suite!(cached_memory, async {
    (
        tidysession::store::CachedStore::new(tidysession::store::MemoryStore::default()),
        (),
    )
});

#[derive(Debug, Clone)]
pub struct User {
    id: u64,
    name: String,
    password: String,
}

impl AuthUser for User {
    type Id = u64;
    fn id(&self) -> u64 {
        self.id
    }
    fn credential_fingerprint(&self) -> &[u8] {
        self.password.as_bytes()
    }
}

/// alice (1) and bob (2); passwords change in place.
#[derive(Debug, Clone)]
pub struct Users(Arc<Mutex<HashMap<u64, User>>>);

impl Users {
    pub fn new() -> Self {
        let users = [(1, "alice"), (2, "bob")].map(|(id, name)| {
            let user = User {
                id,
                name: name.into(),
                password: "pw".into(),
            };
            (id, user)
        });
        Self(Arc::new(Mutex::new(users.into_iter().collect())))
    }

    fn by_name(&self, name: &str) -> Option<User> {
        let users = self.0.lock().unwrap();
        users.values().find(|u| u.name == name).cloned()
    }

    fn set_password(&self, id: u64, password: &str) -> User {
        let mut users = self.0.lock().unwrap();
        let user = users.get_mut(&id).unwrap();
        user.password = password.into();
        user.clone()
    }

    fn remove(&self, id: u64) {
        self.0.lock().unwrap().remove(&id);
    }
}

impl AuthBackend for Users {
    type User = User;
    type Error = Infallible;
    async fn user(&self, id: &u64) -> Result<Option<User>, Infallible> {
        Ok(self.0.lock().unwrap().get(id).cloned())
    }
}

type Auth = AuthSession<Users>;
type Q = Query<HashMap<String, String>>;

async fn whoami(auth: Auth) -> Result<String, AuthError> {
    Ok(auth.user().await?.map_or("null".into(), |u| u.name))
}

async fn login(
    auth: Auth,
    axum::extract::State(users): axum::extract::State<Users>,
    q: Q,
) -> Result<String, AuthError> {
    let user = users.by_name(&q["name"]).expect("known user");
    auth.login(&user).await?;
    Ok("in".into())
}

async fn logout(auth: Auth) -> &'static str {
    auth.logout().await;
    "out"
}

async fn password(
    auth: Auth,
    axum::extract::State(users): axum::extract::State<Users>,
    q: Q,
) -> Result<String, AuthError> {
    let me = auth.user().await?.expect("logged in");
    let me = users.set_password(me.id, &q["pw"]);
    Ok(auth.update_credentials(&me).await?.to_string())
}

/// An admin flow: change someone's password without asking who is logged in here.
async fn password_of(
    auth: Auth,
    axum::extract::State(users): axum::extract::State<Users>,
    q: Q,
) -> Result<String, AuthError> {
    let user = users.by_name(&q["name"]).expect("known user");
    let user = users.set_password(user.id, &q["pw"]);
    Ok(auth.update_credentials(&user).await?.to_string())
}

async fn sessions(auth: Auth) -> Result<axum::Json<Value>, AuthError> {
    let list = auth.sessions().await?;
    Ok(axum::Json(json!(list
        .iter()
        .map(|s| json!({
            "handle": s.handle,
            "current": s.current,
            "ua": s.user_agent,
            "ip": s.address,
            "seen": s.last_seen.is_some(),
        }))
        .collect::<Vec<_>>())))
}

async fn revoke(auth: Auth, q: Q) -> Result<String, AuthError> {
    Ok(auth.revoke(&q["h"]).await?.to_string())
}

async fn revoke_others(auth: Auth) -> Result<String, AuthError> {
    Ok(auth.revoke_others().await?.to_string())
}

/// The util routes plus the auth ones, behind both layers, over a counting store.
fn harness<S: SessionStore>(
    store: Arc<S>,
    users: &Users,
    layer: impl FnOnce(AuthLayer<Users>) -> AuthLayer<Users>,
    keys: &KeyRing,
) -> Harness<Arc<S>> {
    harness_with(store, users, layer, keys, crate::util::server_tier())
}

/// The auth routes over `store` with a session configuration of the test's choosing.
pub fn harness_with<S: SessionStore + ?Sized>(
    store: Arc<S>,
    users: &Users,
    layer: impl FnOnce(AuthLayer<Users>) -> AuthLayer<Users>,
    keys: &KeyRing,
    config: tidysession::SessionConfig,
) -> Harness<Arc<S>> {
    let counting = Arc::new(CountingStore::new(store));
    let auth_routes = Router::new()
        .route("/whoami", get(whoami))
        .route("/login", get(login))
        .route("/logout", get(logout))
        .route("/password", get(password))
        .route("/password-of", get(password_of))
        .route("/sessions", get(sessions))
        .route("/revoke", get(revoke))
        .route("/revoke-others", get(revoke_others))
        .with_state(users.clone());
    let app = routes()
        .merge(auth_routes)
        .layer(layer(AuthLayer::new(users.clone(), keys.clone())))
        .layer(SessionLayer::from_arc(counting.clone()).with_config(config));
    Harness {
        app,
        store: counting,
    }
}

fn keys() -> KeyRing {
    KeyRing::generate(1).unwrap()
}

fn plain<S: SessionStore>(store: Arc<S>) -> (Harness<Arc<S>>, Users) {
    let users = Users::new();
    (harness(store, &users, |l| l, &keys()), users)
}

async fn log_in<S: SessionStore>(h: &Harness<S>, name: &str, cookie: Option<&str>) -> String {
    let r = h.get(&format!("/login?name={name}"), cookie).await;
    assert_eq!(r.body, "in", "{r:?}");
    r.cookie()
}

async fn who<S: SessionStore>(h: &Harness<S>, cookie: &str) -> String {
    h.get("/whoami", Some(cookie)).await.body
}

async fn listing<S: SessionStore>(h: &Harness<S>, cookie: &str) -> Vec<Value> {
    let r = h.get("/sessions", Some(cookie)).await;
    assert!(r.status.is_success(), "{r:?}");
    serde_json::from_str::<Vec<Value>>(&r.body).unwrap()
}

pub async fn login_moves_the_session_to_a_new_id_and_keeps_anonymous_data<S: SessionStore>(
    store: Arc<S>,
) {
    let (h, _) = plain(store);
    let anon = h
        .get("/write?k=cart&v=%5B%22book%22%5D", None)
        .await
        .cookie();
    let logged_in = log_in(&h, "alice", Some(&anon)).await;
    assert_ne!(logged_in, anon, "a new id at login");
    assert_eq!(who(&h, &logged_in).await, "alice");
    assert_eq!(
        h.get("/read?k=cart", Some(&logged_in)).await.body,
        "[\"book\"]"
    );
    // The anonymous id is worthless now.
    let old = h.get("/read?k=cart", Some(&anon)).await;
    assert_eq!(old.body, "");
    assert!(old.removes_session());
    assert_eq!(who(&h, &anon).await, "null");
    // Logging in without any session first works too.
    let fresh = log_in(&h, "alice", None).await;
    assert_eq!(who(&h, &fresh).await, "alice");
}

pub async fn logging_in_as_another_user_keeps_nothing_of_the_first<S: SessionStore>(store: Arc<S>) {
    let (h, _) = plain(store);
    let alice = log_in(&h, "alice", None).await;
    h.get("/write?k=secret&v=alices", Some(&alice)).await;
    let bob = log_in(&h, "bob", Some(&alice)).await;
    assert_ne!(bob, alice);
    assert_eq!(who(&h, &bob).await, "bob");
    assert_eq!(h.get("/read?k=secret", Some(&bob)).await.body, "");
    assert_eq!(who(&h, &alice).await, "null", "alice's session ended");
}

pub async fn password_change_logs_out_the_other_sessions_only<S: SessionStore>(store: Arc<S>) {
    let (h, users) = plain(store);
    let (c1, c2) = (
        log_in(&h, "alice", None).await,
        log_in(&h, "alice", None).await,
    );
    let bob = log_in(&h, "bob", None).await;
    let r = h.get("/password?pw=new", Some(&c1)).await;
    assert_eq!(r.body, "1", "one other session revoked: {r:?}");
    assert_eq!(who(&h, &c1).await, "alice", "the changing session stays in");
    assert_eq!(who(&h, &c2).await, "null");
    assert_eq!(who(&h, &bob).await, "bob");
    // Changed elsewhere (no update_credentials on this side): the auth hash no longer matches
    // and the session logs out on its next request.
    users.set_password(1, "changed elsewhere");
    let r = h.get("/whoami", Some(&c1)).await;
    assert_eq!(r.body, "null");
    assert!(r.removes_session(), "{r:?}");
}

#[tokio::test]
async fn update_credentials_never_keeps_a_session_that_was_already_logged_out() {
    let (h, users) = plain(Arc::new(tidysession::store::MemoryStore::default()));
    let (c1, c2) = (
        log_in(&h, "alice", None).await,
        log_in(&h, "alice", None).await,
    );
    let bob = log_in(&h, "bob", None).await;
    // Changed elsewhere: c1's hash is stale. An admin flow on c1 that never asks who is
    // logged in must not refresh c1's hash.
    users.set_password(1, "changed elsewhere");
    h.get("/password-of?name=alice&pw=again", Some(&c1)).await;
    assert_eq!(who(&h, &c1).await, "null");
    assert_eq!(who(&h, &c2).await, "null");
    // Bob changing alice's password ends all of hers and none of his.
    let a = log_in(&h, "alice", None).await;
    let r = h.get("/password-of?name=alice&pw=third", Some(&bob)).await;
    assert_eq!(r.body, "1");
    assert_eq!(who(&h, &a).await, "null");
    assert_eq!(who(&h, &bob).await, "bob");
}

pub async fn revoke_one_and_revoke_others<S: SessionStore>(store: Arc<S>) {
    let (h, _) = plain(store);
    let c: Vec<String> = [
        log_in(&h, "alice", None).await,
        log_in(&h, "alice", None).await,
        log_in(&h, "alice", None).await,
    ]
    .into();
    log_in(&h, "bob", None).await;
    let list = listing(&h, &c[0]).await;
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    for s in &list {
        let handle = s["handle"].as_str().unwrap();
        assert!(
            c.iter().all(|cookie| !cookie.contains(handle)),
            "handles are not ids"
        );
    }
    // Find c[1]'s handle from its own listing, revoke it from c[0].
    let theirs = listing(&h, &c[1]).await;
    let handle = theirs.iter().find(|s| s["current"] == true).unwrap()["handle"].clone();
    let r = h
        .get(
            &format!("/revoke?h={}", handle.as_str().unwrap()),
            Some(&c[0]),
        )
        .await;
    assert_eq!(r.body, "true");
    assert_eq!(who(&h, &c[1]).await, "null");
    assert_eq!(h.get("/revoke?h=nonsense", Some(&c[0])).await.body, "false");
    assert_eq!(listing(&h, &c[0]).await.len(), 2);
    // Log out everywhere else.
    assert_eq!(h.get("/revoke-others", Some(&c[0])).await.body, "1");
    assert_eq!(who(&h, &c[2]).await, "null");
    assert_eq!(who(&h, &c[0]).await, "alice");
    let list = listing(&h, &c[0]).await;
    assert_eq!(list.len(), 1);
    // Revoking the current session logs out.
    let own = list[0]["handle"].as_str().unwrap().to_owned();
    let r = h.get(&format!("/revoke?h={own}"), Some(&c[0])).await;
    assert_eq!(r.body, "true");
    assert!(r.removes_session());
    assert_eq!(who(&h, &c[0]).await, "null");
}

pub async fn cap_per_user_evicts_the_oldest_at_login<S: SessionStore>(store: Arc<S>) {
    let users = Users::new();
    let h = harness(store, &users, |l| l.with_max_sessions_per_user(2), &keys());
    let first = log_in(&h, "alice", None).await;
    let second = log_in(&h, "alice", None).await;
    let third = log_in(&h, "alice", None).await;
    assert_eq!(who(&h, &first).await, "null", "the oldest was evicted");
    assert_eq!(who(&h, &second).await, "alice");
    assert_eq!(who(&h, &third).await, "alice");
    assert_eq!(listing(&h, &third).await.len(), 2);
    // Logging in again on a session already counted does not evict another.
    let again = log_in(&h, "alice", Some(&third)).await;
    assert_eq!(who(&h, &second).await, "alice");
    assert_eq!(listing(&h, &again).await.len(), 2);
}

pub async fn listing_never_shows_expired_sessions<S: SessionStore>(store: Arc<S>) {
    let (h, _) = plain(store);
    let keeper = log_in(&h, "alice", None).await;
    let short = log_in(&h, "alice", None).await;
    let r = h.get("/expiry?kind=at&s=3", Some(&short)).await;
    assert!(r.status.is_success(), "{r:?}");
    let both = listing(&h, &keeper).await;
    assert_eq!(both.len(), 2, "{both:?}");
    let fixed = listing(&h, &short).await;
    let mine = fixed.iter().find(|s| s["current"] == true);
    let mine = mine.unwrap_or_else(|| panic!("the current session is listed: {fixed:?}"));
    assert_eq!(
        mine["seen"], false,
        "a fixed expiry says nothing about last use"
    );
    // Seconds of margin, for a busy machine, before the short one expires.
    tokio::time::sleep(std::time::Duration::from_millis(3300)).await;
    let list = listing(&h, &keeper).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[0]["seen"], true);
}

pub async fn logout_removes_the_session_from_the_listing<S: SessionStore>(store: Arc<S>) {
    let (h, _) = plain(store);
    let (c1, c2) = (
        log_in(&h, "alice", None).await,
        log_in(&h, "alice", None).await,
    );
    let r = h.get("/logout", Some(&c2)).await;
    assert!(r.removes_session());
    assert_eq!(who(&h, &c2).await, "null");
    assert_eq!(listing(&h, &c1).await.len(), 1);
}

#[tokio::test]
async fn asking_who_is_this_without_a_cookie_does_no_store_io() {
    let (h, _) = plain(Arc::new(tidysession::store::MemoryStore::default()));
    let r = h.get("/whoami", None).await;
    assert_eq!(r.body, "null");
    assert!(r.sets_nothing());
    assert_eq!(h.counts().total(), 0);
    // The auth layer alone costs nothing either (I1), whatever the cookie.
    let alice = log_in(&h, "alice", None).await;
    let before = h.counts();
    let r = h.get("/untouched", Some(&alice)).await;
    assert!(r.sets_nothing() && !r.vary, "{r:?}");
    assert_eq!(h.counts(), before);
    // An anonymous session: one load, no write.
    let anon = h.get("/write?k=cart&v=1", None).await.cookie();
    let before = h.counts();
    assert_eq!(who(&h, &anon).await, "null");
    let after = h.counts();
    assert_eq!(
        (after.loads - before.loads, after.writes() - before.writes()),
        (1, 0)
    );
    // A logged-in session: one load (the user comes from the backend), no write.
    let alice = log_in(&h, "alice", None).await;
    let before = h.counts();
    assert_eq!(who(&h, &alice).await, "alice");
    let after = h.counts();
    assert_eq!(
        (after.loads - before.loads, after.writes() - before.writes()),
        (1, 0)
    );
}

#[tokio::test]
async fn the_user_is_loaded_once_per_request() {
    #[derive(Debug, Clone)]
    struct CountingUsers(Users, Arc<std::sync::atomic::AtomicUsize>);
    impl AuthBackend for CountingUsers {
        type User = User;
        type Error = Infallible;
        async fn user(&self, id: &u64) -> Result<Option<User>, Infallible> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.0.user(id).await
        }
    }
    let users = Users::new();
    let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let backend = CountingUsers(users.clone(), loads.clone());
    let store = Arc::new(CountingStore::new(
        tidysession::store::MemoryStore::default(),
    ));
    let app = Router::new()
        .route(
            "/twice",
            get(|auth: AuthSession<CountingUsers>| async move {
                let a = auth.user().await.unwrap().map(|u| u.name);
                let b = auth.user().await.unwrap().map(|u| u.name);
                format!("{a:?} {b:?}")
            }),
        )
        .route(
            "/login",
            get(|auth: AuthSession<CountingUsers>| async move {
                let alice = auth.user().await.unwrap();
                assert!(alice.is_none());
                let u = User {
                    id: 1,
                    name: "alice".into(),
                    password: "pw".into(),
                };
                auth.login(&u).await.unwrap();
                "in"
            }),
        )
        .layer(AuthLayer::new(backend, keys()))
        .layer(SessionLayer::from_arc(store.clone()).with_config(crate::util::server_tier()));
    let h = Harness { app, store };
    let cookie = h.get("/login", None).await.cookie();
    loads.store(0, std::sync::atomic::Ordering::SeqCst);
    let before = h.counts();
    let r = h.get("/twice", Some(&cookie)).await;
    assert_eq!(r.body, "Some(\"alice\") Some(\"alice\")");
    assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(h.counts().loads - before.loads, 1);
}

#[tokio::test]
async fn key_rotation_accepts_old_hashes_once_then_drops_removed_keys() {
    let store = Arc::new(tidysession::store::MemoryStore::default());
    let users = Users::new();
    let k1 = KeyRing::generate(1).unwrap();
    let k2 = KeyRing::generate(2).unwrap();
    let under_k1 = harness(store.clone(), &users, |l| l, &k1);
    let alice = log_in(&under_k1, "alice", None).await;
    // Key 2 added in front: still logged in, and the hash is re-made (one update).
    let under_both = harness(store.clone(), &users, |l| l, &k2.clone().with_older(&k1));
    assert_eq!(who(&under_both, &alice).await, "alice");
    assert_eq!(under_both.counts().updates, 1);
    assert_eq!(who(&under_both, &alice).await, "alice");
    assert_eq!(under_both.counts().updates, 1, "re-made once");
    // Key 1 removed: the re-made hash still holds.
    let under_k2 = harness(store.clone(), &users, |l| l, &k2);
    assert_eq!(who(&under_k2, &alice).await, "alice");
    // A session whose hash only key 1 made is logged out once key 1 is gone.
    let other = log_in(&under_k1, "bob", None).await;
    let r = under_k2.get("/whoami", Some(&other)).await;
    assert_eq!(r.body, "null");
    assert!(r.removes_session());
}

#[tokio::test]
async fn tampered_hash_or_unknown_user_logs_out() {
    let (h, users) = plain(Arc::new(tidysession::store::MemoryStore::default()));
    let alice = log_in(&h, "alice", None).await;
    h.get("/write?k=_auth_user_hash&v=1$00", Some(&alice)).await;
    let r = h.get("/whoami", Some(&alice)).await;
    assert_eq!(r.body, "null");
    assert!(r.removes_session());
    // Pointing the session at another user without their hash gets nowhere either.
    let bob = log_in(&h, "bob", None).await;
    h.get("/write?k=_auth_user_id&v=%221%22", Some(&bob)).await;
    assert_eq!(who(&h, &bob).await, "null");
    let bob = log_in(&h, "bob", None).await;
    users.remove(2);
    assert_eq!(who(&h, &bob).await, "null", "a deleted user is logged out");
}

#[tokio::test]
async fn client_metadata_is_kept_only_when_asked() {
    let store = Arc::new(tidysession::store::MemoryStore::default());
    let users = Users::new();
    let off = harness(store.clone(), &users, |l| l, &keys());
    let on = harness(
        store,
        &users,
        |l| l.with_client_metadata(ClientAddress::Header("x-real-ip".parse().unwrap())),
        &keys(),
    );
    let plain = log_in(&off, "alice", None).await;
    let list = listing(&off, &plain).await;
    assert_eq!(
        (&list[0]["ua"], &list[0]["ip"]),
        (&Value::Null, &Value::Null)
    );
    let req = axum::http::Request::get("/login?name=bob")
        .header("user-agent", "TestBrowser/1.0")
        .header("x-real-ip", "192.0.2.7")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(on.app.clone(), req)
        .await
        .unwrap();
    let set = res.headers()["set-cookie"].to_str().unwrap();
    let cookie = set.split(';').next().unwrap().to_owned();
    let list = listing(&on, &cookie).await;
    assert_eq!(list[0]["ua"], "TestBrowser/1.0");
    assert_eq!(list[0]["ip"], "192.0.2.7");
}

#[tokio::test]
async fn without_the_auth_layer_the_extractor_says_why_and_the_optional_one_is_none() {
    use axum::body::Body;
    use http::{Request, StatusCode};
    use tower::ServiceExt as _;

    async fn required(_auth: Auth) -> &'static str {
        "unreachable"
    }
    async fn optional(auth: Option<Auth>) -> &'static str {
        match auth {
            Some(_) => "some",
            None => "none",
        }
    }
    let bare = Router::new()
        .route("/required", get(required))
        .route("/optional", get(optional));
    let send = |app: Router, uri: &'static str| async move {
        let r = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    };
    let (status, body) = send(bare.clone(), "/required").await;
    assert_eq!(status, tidysession::auth::MissingAuthLayer.status());
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("AuthLayer"), "{body}");
    assert_eq!(
        send(bare, "/optional").await,
        (StatusCode::OK, "none".into())
    );

    // With the layers, the optional extractor finds the auth session.
    let store = Arc::new(tidysession::store::MemoryStore::default());
    let wired = Router::new()
        .route("/optional", get(optional))
        .layer(AuthLayer::new(Users::new(), keys()))
        .layer(SessionLayer::from_arc(store));
    assert_eq!(
        send(wired, "/optional").await,
        (StatusCode::OK, "some".into())
    );
}
