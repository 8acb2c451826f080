//! One login across a running Django app and the `django_companion` example, through HTTP.
//!
//! Each test gets a PostgreSQL schema of its own (dropped at the end), runs Django's `migrate`
//! into it, creates users with Django's `create_user`, and starts two servers on free loopback
//! ports: Django (`interop/companion_site`, `manage.py runserver`) and the example's router,
//! in process. A small HTTP client plays the browser: one `sessionid` cookie, sent to both
//! (browsers do not keep cookies apart by port). The Python comes from
//! `TIDYSESSION_TEST_DJANGO_PYTHON`, as for `tests/django.rs`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tidysession::auth::{AuthBackend, DjangoUsers};
use tidysession::store::DjangoStore;
use tidysession::SessionConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::util::servers::{self, DropOnExit, DJANGO_OLD_SECRET, DJANGO_SECRET};

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../examples/django_companion.rs"]
mod companion;

/// How long starting a server or running a Django command may take.
const DEADLINE: Duration = Duration::from_secs(90);

const ALICE: (&str, &str) = ("alice", "alice-pässword");
/// Bob's password is hashed with Django's Argon2PasswordHasher.
const BOB: (&str, &str) = ("bob", "bob-password");
const CAROL_INACTIVE: (&str, &str) = ("carol", "carol-password");

/// A child process killed (and reaped) when dropped.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh schema with Django's tables and users, dropped at the end.
struct Prepared {
    schema: DropOnExit,
    dir: tempfile::TempDir,
}

impl Prepared {
    /// The test database's URL, with the schema as the search path.
    fn url(&self) -> String {
        let url = servers::postgres_url();
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-c%20search_path%3D{}", self.schema.name)
    }
}

/// The two servers, over one fresh schema.
struct Pair {
    django: String,
    rust: String,
    _django_server: Running,
    _rust_server: tokio::task::JoinHandle<()>,
    _db: Prepared,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn site() -> PathBuf {
    crate::django::repo_root().join("interop/companion_site")
}

fn django_command(schema: &str, log: &std::path::Path) -> Command {
    let mut cmd = Command::new(crate::django::python());
    cmd.arg(site().join("manage.py"))
        .current_dir(site())
        .env("DJANGO_SECRET_KEY", DJANGO_SECRET)
        .env("DJANGO_SECRET_KEY_FALLBACKS", DJANGO_OLD_SECRET)
        .env("COMPANION_DATABASE_URL", servers::postgres_url())
        .env("COMPANION_SCHEMA", schema)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap());
    cmd
}

/// Runs a Django management command to completion, within the deadline.
fn manage(schema: &str, dir: &std::path::Path, args: &[&str]) {
    let log = dir.join(format!("{}.log", args[0]));
    let mut child = django_command(schema, &log)
        .args(args)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run Django's Python {} ({e}): run `bash scripts/django-env.sh` or set \
                 TIDYSESSION_TEST_DJANGO_PYTHON",
                crate::django::python().display()
            )
        });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("manage.py {args:?} took longer than {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "manage.py {args:?} failed ({status}):\n{}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
    );
}

/// Waits until something listens on `port`, failing early if `server` exits.
async fn wait_for_port(port: u16, mut server: Option<&mut Running>) {
    let start = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Some(server) = server.as_deref_mut() {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "the Django server exited ({status}):\n{}",
                    std::fs::read_to_string(server.log.with_extension("err")).unwrap_or_default()
                );
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "nothing listens on port {port} after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn prepare() -> Prepared {
    let schema = servers::unique_name("tidysession_dj");
    let guard = DropOnExit::postgres_schema(&schema);
    {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&servers::postgres_url())
            .await
            .unwrap();
        sqlx::raw_sql(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    manage(&schema, dir.path(), &["migrate", "--noinput", "-v", "0"]);
    let create_users = format!(
        "from django.contrib.auth.hashers import make_password\n\
         from django.contrib.auth.models import User\n\
         User.objects.create_user({alice:?}, password={alice_pw:?})\n\
         bob = User.objects.create_user({bob:?})\n\
         bob.password = make_password({bob_pw:?}, hasher='argon2')\n\
         bob.save()\n\
         User.objects.create_user({carol:?}, password={carol_pw:?}, is_active=False)\n",
        alice = ALICE.0,
        alice_pw = ALICE.1,
        bob = BOB.0,
        bob_pw = BOB.1,
        carol = CAROL_INACTIVE.0,
        carol_pw = CAROL_INACTIVE.1,
    );
    manage(&schema, dir.path(), &["shell", "-c", &create_users]);
    Prepared { schema: guard, dir }
}

async fn start() -> Pair {
    let db = prepare().await;
    let schema = db.schema.name.clone();
    let dir = &db.dir;

    // Django.
    let django_port = free_port();
    let log = dir.path().join("runserver.log");
    let mut django = Running {
        child: django_command(&schema, &log)
            .args([
                "runserver",
                &format!("127.0.0.1:{django_port}"),
                "--noreload",
            ])
            .spawn()
            .unwrap(),
        log,
    };

    // The Rust example, in process, over the same schema.
    let url = db.url();
    let secrets = servers::django_secrets();
    let store = DjangoStore::connect(&url, secrets).await.unwrap();
    let users = DjangoUsers::from_store(&store).unwrap();
    let app = companion::router(users, store, SessionConfig::django().with_secure(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rust_port = listener.local_addr().unwrap().port();
    let rust = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });

    wait_for_port(django_port, Some(&mut django)).await;
    wait_for_port(rust_port, None).await;
    Pair {
        django: format!("127.0.0.1:{django_port}"),
        rust: format!("127.0.0.1:{rust_port}"),
        _django_server: django,
        _rust_server: rust,
        _db: db,
    }
}

/// A browser with one cookie: Django's `sessionid`.
#[derive(Debug, Clone, Default)]
struct Browser {
    session: Option<String>,
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Browser {
    async fn request(
        &mut self,
        server: &str,
        method: &str,
        target: &str,
        form: &str,
    ) -> (u16, Value) {
        let mut stream = tokio::time::timeout(DEADLINE, tokio::net::TcpStream::connect(server))
            .await
            .expect("connect timed out")
            .unwrap();
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            form.len()
        );
        if !form.is_empty() {
            request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        if let Some(cookie) = &self.session {
            request.push_str(&format!("Cookie: sessionid={cookie}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(form);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(DEADLINE, stream.read_to_end(&mut raw))
            .await
            .expect("response timed out")
            .unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad response: {head}"));
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if !name.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let value = value.trim();
            let Some(rest) = value.strip_prefix("sessionid=") else {
                continue;
            };
            let cookie = rest.split(';').next().unwrap_or("").trim_matches('"');
            let removed = cookie.is_empty()
                || value
                    .to_ascii_lowercase()
                    .split(';')
                    .any(|a| a.trim() == "max-age=0");
            self.session = (!removed).then(|| cookie.to_owned());
        }
        let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
        (status, body)
    }

    async fn get(&mut self, server: &str, path: &str, q: &[(&str, &str)]) -> Value {
        let target = if q.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", query(q))
        };
        let (status, body) = self.request(server, "GET", &target, "").await;
        assert_eq!(status, 200, "GET {server}{target}: {body}");
        body
    }

    async fn post(&mut self, server: &str, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        self.request(server, "POST", path, &query(form)).await
    }

    async fn whoami(&mut self, server: &str) -> Value {
        self.get(server, "/whoami", &[]).await["user"].clone()
    }

    async fn login(&mut self, server: &str, (user, password): (&str, &str)) -> u16 {
        let (status, body) = self
            .post(
                server,
                "/login",
                &[("username", user), ("password", password)],
            )
            .await;
        if status == 200 {
            assert_eq!(body["user"], user, "{body}");
        }
        status
    }

    async fn set(&mut self, server: &str, key: &str, value: &Value) {
        let json = value.to_string();
        let got = self
            .get(server, "/session/set", &[("key", key), ("json", &json)])
            .await;
        assert_eq!(&got["value"], value);
    }

    async fn read(&mut self, server: &str, key: &str) -> Value {
        self.get(server, "/session/get", &[("key", key)]).await["value"].clone()
    }
}

/// What the tests share across the two sides: text (with non-ASCII), numbers, nested objects.
fn values() -> Vec<(&'static str, Value)> {
    vec![
        (
            "text",
            json!("Grüße aus Zürich — 世界 🎉 \"quoted\" \\ back"),
        ),
        ("int", json!(42)),
        ("negative", json!(-7)),
        ("float", json!(0.1)),
        ("big", json!(9_007_199_254_740_993_i64)),
        ("flag", json!(true)),
        (
            "cart",
            json!({"items": [{"sku": "A-1", "qty": 2}, {"sku": "ключ", "qty": 1}], "note": null}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_login_is_seen_by_rust_and_rust_logout_logs_out_both() {
    let pair = start().await;
    let (dj, rs) = (pair.django.as_str(), pair.rust.as_str());
    let mut browser = Browser::default();
    assert_eq!(browser.whoami(rs).await, Value::Null);
    assert_eq!(browser.whoami(dj).await, Value::Null);

    // Anonymous data set on Django survives the Django login and is read by Rust.
    browser.set(dj, "before_login", &json!("kept")).await;
    assert_eq!(browser.login(dj, ALICE).await, 200);
    assert_eq!(browser.whoami(rs).await, "alice");
    assert_eq!(browser.read(rs, "before_login").await, "kept");

    // Values Django sets, Rust reads, and the other way round, on the logged-in session.
    for (key, value) in values() {
        browser.set(dj, &format!("dj_{key}"), &value).await;
        browser.set(rs, &format!("rs_{key}"), &value).await;
    }
    for (key, value) in values() {
        assert_eq!(browser.read(rs, &format!("dj_{key}")).await, value, "{key}");
        assert_eq!(browser.read(dj, &format!("rs_{key}")).await, value, "{key}");
    }
    // A plain text value through `value=`.
    browser
        .get(
            rs,
            "/session/set",
            &[("key", "plain"), ("value", "naïve café")],
        )
        .await;
    assert_eq!(browser.read(dj, "plain").await, "naïve café");
    assert_eq!(browser.whoami(dj).await, "alice");

    // Logout on Rust: logged out on both, and the old cookie opens nothing on either.
    let mut stale = browser.clone();
    let (status, _) = browser.post(rs, "/logout", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(browser.session, None, "the cookie was removed");
    assert_eq!(browser.whoami(dj).await, Value::Null);
    assert_eq!(browser.whoami(rs).await, Value::Null);
    assert_eq!(stale.whoami(dj).await, Value::Null);
    assert_eq!(stale.whoami(rs).await, Value::Null);
    assert_eq!(stale.read(dj, "dj_text").await, Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_login_is_seen_by_django_and_django_logout_logs_out_both() {
    let pair = start().await;
    let (dj, rs) = (pair.django.as_str(), pair.rust.as_str());
    let mut browser = Browser::default();

    // Wrong passwords, unknown and inactive users are refused, on both sides alike.
    assert_eq!(browser.login(rs, (ALICE.0, "wrong")).await, 401);
    assert_eq!(browser.login(dj, (ALICE.0, "wrong")).await, 401);
    assert_eq!(browser.login(rs, ("nobody", "x")).await, 401);
    assert_eq!(browser.login(rs, CAROL_INACTIVE).await, 401);
    assert_eq!(browser.login(dj, CAROL_INACTIVE).await, 401);

    // Anonymous data set on Rust survives the Rust login (the id changes) and Django sees both.
    browser.set(rs, "cart", &json!(["book", "pen"])).await;
    let anonymous = browser.session.clone();
    assert!(
        anonymous.is_some(),
        "Django's store keeps anonymous sessions on the server"
    );
    assert_eq!(browser.login(rs, ALICE).await, 200);
    assert_ne!(
        browser.session, anonymous,
        "login moved the session to a new key"
    );
    assert_eq!(browser.whoami(dj).await, "alice");
    assert_eq!(browser.read(dj, "cart").await, json!(["book", "pen"]));
    assert_eq!(browser.whoami(rs).await, "alice");

    // Logout on Django: logged out on both.
    let mut stale = browser.clone();
    let (status, _) = browser.post(dj, "/logout", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(browser.whoami(rs).await, Value::Null);
    assert_eq!(browser.whoami(dj).await, Value::Null);
    assert_eq!(stale.whoami(rs).await, Value::Null);

    // A password Django hashed with Argon2 logs in on Rust; Django accepts the session.
    let mut other = Browser::default();
    assert_eq!(other.login(rs, (BOB.0, "wrong")).await, 401);
    assert_eq!(other.login(rs, BOB).await, 200);
    assert_eq!(other.whoami(dj).await, "bob");
    // Logging in as another user on the same browser (on Django) replaces the first.
    assert_eq!(other.login(dj, ALICE).await, 200);
    assert_eq!(other.whoami(rs).await, "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_changed_in_django_logs_the_rust_side_out() {
    let pair = start().await;
    let (dj, rs) = (pair.django.as_str(), pair.rust.as_str());
    let mut on_rust = Browser::default();
    let mut on_django = Browser::default();
    assert_eq!(on_rust.login(rs, ALICE).await, 200);
    on_rust.set(rs, "draft", &json!("unsaved")).await;
    assert_eq!(on_django.login(dj, ALICE).await, 200);
    assert_eq!(on_rust.whoami(rs).await, "alice");

    // Django changes the password and keeps its own session (update_session_auth_hash).
    let (status, body) = on_django
        .post(dj, "/change-password", &[("password", "new-pässword")])
        .await;
    assert_eq!(status, 200, "{body}");

    // The Rust login (made with the old password hash) is logged out on both sides...
    assert_eq!(on_rust.whoami(rs).await, Value::Null);
    assert_eq!(
        on_rust.session, None,
        "the flushed session's cookie was removed"
    );
    assert_eq!(on_rust.whoami(dj).await, Value::Null);
    // ...the session that changed it stays logged in, Rust agreeing...
    assert_eq!(on_django.whoami(rs).await, "alice");
    assert_eq!(on_django.whoami(dj).await, "alice");
    // ...and the new password works on Rust, the old one no longer.
    assert_eq!(on_rust.login(rs, ALICE).await, 401);
    assert_eq!(on_rust.login(rs, (ALICE.0, "new-pässword")).await, 200);
    assert_eq!(on_rust.whoami(dj).await, "alice");
}

/// `DjangoUsers` reads what Django's `create_user` wrote (no HTTP): ids, activity, passwords.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_users_reads_djangos_auth_user() {
    let db = prepare().await;
    let users = DjangoUsers::connect(&db.url(), servers::django_secrets())
        .await
        .unwrap();
    let alice = users.authenticate(ALICE.0, ALICE.1).await.unwrap().unwrap();
    assert!(alice.password_hash().starts_with("pbkdf2_sha256$"));
    assert_eq!(users.user(&alice.id).await.unwrap(), Some(alice.clone()));
    let bob = users.authenticate(BOB.0, BOB.1).await.unwrap().unwrap();
    assert!(bob.password_hash().starts_with("argon2$argon2id$"));
    assert!(users
        .authenticate(CAROL_INACTIVE.0, CAROL_INACTIVE.1)
        .await
        .unwrap()
        .is_none());
    assert!(users
        .authenticate("ALICE", ALICE.1)
        .await
        .unwrap()
        .is_none());
    assert_eq!(users.user(&-1).await.unwrap(), None);
    // Carol exists but is inactive: nobody.
    let carol_id = alice.id.max(bob.id) + 1;
    assert_eq!(users.user(&carol_id).await.unwrap(), None);
    assert!(
        format!("{alice:?}").find("pbkdf2").is_none(),
        "Debug hides the hash"
    );
}
