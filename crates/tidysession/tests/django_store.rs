//! `DjangoStore` against real Django: Django reads what the store writes, the store reads
//! what Django writes, and concurrent Rust requests on a Django session lose nothing, on
//! PostgreSQL and SQLite. `interop/django_sessions.py` is the Django side (the Python comes
//! from `TIDYSESSION_TEST_DJANGO_PYTHON`, as for `tests/django.rs`).

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::{json, Value};
use tidysession::django::Secrets;
use tidysession::store::django::CREATED_KEY;
use tidysession::store::{DjangoStore, SessionStore};
use tidysession::{
    store::{Change, Record, SessionId, StorageKey},
    StoreError,
};
use time::{Duration, OffsetDateTime};

use crate::conformance::{data, fresh, key_for, now, record, set};
use crate::util::servers::{self, DJANGO_OLD_SECRET, DJANGO_SECRET};
use crate::util::Harness;

/// One database the Django side and the store share.
struct Shared {
    store: Arc<DjangoStore>,
    database_url: String,
    table: String,
    _guard: Box<dyn std::any::Any + Send>,
}

async fn postgres() -> Shared {
    let (store, guard) = servers::django_postgres().await;
    Shared {
        table: store.table_name().to_owned(),
        store: Arc::new(store),
        database_url: servers::postgres_url(),
        _guard: Box::new(guard),
    }
}

#[cfg(feature = "mysql")]
async fn mysql() -> Shared {
    let (store, guard) = servers::django_mysql().await;
    Shared {
        table: store.table_name().to_owned(),
        store: Arc::new(store),
        database_url: servers::mysql_url(),
        _guard: Box::new(guard),
    }
}

async fn sqlite() -> Shared {
    let (store, dir) = servers::django_sqlite().await;
    Shared {
        table: store.table_name().to_owned(),
        store: Arc::new(store),
        database_url: format!("sqlite://{}", dir.path().join("django.db").display()),
        _guard: Box::new(dir),
    }
}

impl Shared {
    /// Runs Django with `secret` (and the old secret as a fallback when `fallback`) on the ops.
    fn django_with(&self, secret: &str, fallbacks: &[&str], ops: Value) -> Vec<Value> {
        let python = crate::django::python();
        let script = crate::django::repo_root().join("interop/django_sessions.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run Django's Python {} ({e}): run `bash scripts/django-env.sh` or set \
                     TIDYSESSION_TEST_DJANGO_PYTHON",
                    python.display()
                )
            });
        let request = json!({
            "database_url": self.database_url, "table": self.table,
            "secret": secret, "fallbacks": fallbacks, "ops": ops,
        });
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(request.to_string().as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{} failed ({}):\n{}\n(`bash scripts/django-env.sh` installs Django and psycopg)",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Django configured like the store: the current secret, the old one as a fallback.
    fn django(&self, ops: Value) -> Vec<Value> {
        self.django_with(DJANGO_SECRET, &[DJANGO_OLD_SECRET], ops)
    }

    fn django_load(&self, key: &StorageKey) -> Value {
        let key = std::str::from_utf8(key.as_bytes()).unwrap();
        self.django(json!([{"op": "load", "key": key}])).remove(0)
    }

    /// A session saved by Django with `secret`; its key.
    fn django_save_with(&self, secret: &str, data: Value, expiry: Value) -> (StorageKey, Value) {
        let saved = self
            .django_with(
                secret,
                &[],
                json!([{"op": "save", "data": data, "expiry": expiry}]),
            )
            .remove(0);
        let key: [u8; 32] = saved["key"]
            .as_str()
            .unwrap()
            .as_bytes()
            .try_into()
            .unwrap();
        (StorageKey::from_bytes(key), saved)
    }
}

fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

/// What the tests put in sessions: non-ASCII text, nested objects, numbers of every kind.
fn rich() -> Value {
    json!({
        "greeting": "Grüße, Zürich — 世界 🎉",
        "ключ 🔑": "quotes \" and \\ and\ttabs\nnewlines",
        "cart": {"items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}], "note": null},
        "deep": {"x": {"y": [[], {}, [1, [2, [3]]]]}},
        "n": 42, "neg": -7, "zero": 0, "big": 9_007_199_254_740_993_i64,
        "tenth": 0.1, "half": -2.5, "yes": true, "no": false
    })
}

async fn django_reads_what_the_store_writes(db: Shared) {
    let store = &db.store;
    let k = key_for(&**store);
    let r = fresh(rich());
    store.create(&k, &r).await.unwrap();
    let got = db.django_load(&k);
    assert_eq!(got["found"], true, "{got}");
    let mut seen = got["data"].as_object().unwrap().clone();
    assert_eq!(
        seen.remove(CREATED_KEY),
        Some(json!(micros(r.created_at) / 1000)),
        "the creation time rides along in the data"
    );
    assert_eq!(seen, r.data, "Django sees the same data");
    assert_eq!(got["row_expire_date_us"], micros(r.expires_at));

    // A per-key change from Rust; Django still reads the row, with both keys.
    store
        .update(&k, &set(&[("added", json!("später"))]), now())
        .await
        .unwrap();
    let got = db.django_load(&k);
    assert_eq!(got["data"]["added"], "später");
    assert_eq!(got["data"]["greeting"], r.data["greeting"]);

    // A session whose expiry Django knows as a datetime: get_expiry_date() agrees.
    let k = key_for(&**store);
    let at = now() + Duration::hours(3);
    let iso = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    );
    let r = record(json!({"a": 1, "_session_expiry": iso}), now(), at);
    store.create(&k, &r).await.unwrap();
    let got = db.django_load(&k);
    assert_eq!(got["found"], true);
    assert_eq!(got["expiry_date_us"], micros(at));
    assert_eq!(got["row_expire_date_us"], micros(at));

    // Expired rows: Django does not load them either.
    let k = key_for(&**store);
    let t = now();
    store
        .create(&k, &record(json!({"a": 1}), t - Duration::hours(2), t))
        .await
        .unwrap();
    assert_eq!(db.django_load(&k)["found"], false);
}

async fn the_store_reads_what_django_writes(db: Shared) {
    let store = &db.store;
    // Sliding expiry of one hour, set by Django.
    let before = now();
    let (k, saved) = db.django_save_with(DJANGO_SECRET, rich(), json!(3600));
    let got = store
        .load(&k, now())
        .await
        .unwrap()
        .expect("Django's session loads");
    let mut expected = data(rich());
    expected.insert("_session_expiry".into(), json!(3600));
    assert_eq!(got.data, expected);
    assert_eq!(micros(got.expires_at), saved["row_expire_date_us"]);
    assert!(got.expires_at >= before + Duration::minutes(59));
    assert_eq!(
        got.created_at,
        got.expires_at - Duration::hours(1),
        "no creation time from Django: its last save"
    );
    // A refresh never goes past what _session_expiry allows: an hour from now.
    store
        .touch(&k, now() + Duration::days(14), now())
        .await
        .unwrap();
    let touched = store.load(&k, now()).await.unwrap().unwrap();
    assert!(touched.expires_at >= got.expires_at);
    assert!(touched.expires_at <= now() + Duration::hours(1));
    // A Rust change keeps Django's expiry and the data; Django reads the result.
    store
        .update(&k, &set(&[("rust", json!(1))]), now())
        .await
        .unwrap();
    let back = db.django_load(&k);
    assert_eq!(back["data"]["rust"], 1);
    assert_eq!(back["data"]["_session_expiry"], 3600);
    assert_eq!(back["data"]["greeting"], rich()["greeting"]);

    // A fixed expiry (a datetime) and a payload Django compresses.
    let at = now() + Duration::hours(2);
    let iso = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let big = json!({"text": "abc ".repeat(500), "list": vec![1; 300]});
    let (k, saved) = db.django_save_with(DJANGO_SECRET, big.clone(), json!(iso));
    assert!(
        saved["session_data"].as_str().unwrap().starts_with('.'),
        "Django compressed it: {}",
        saved["session_data"]
    );
    let got = store.load(&k, now()).await.unwrap().unwrap();
    assert_eq!(got.data["text"], big["text"]);
    assert_eq!(got.data["list"], big["list"]);
    assert_eq!(micros(got.expires_at), saved["row_expire_date_us"]);
    let fixed = got.expires_at;
    store
        .touch(&k, now() + Duration::days(14), now())
        .await
        .unwrap();
    let change = Change {
        set: set(&[("b", json!(2))]).set,
        expiry: Some(tidysession::store::ExpiryChange::Touch(
            now() + Duration::days(14),
        )),
        ..Change::default()
    };
    store.update(&k, &change, now()).await.unwrap();
    let got = store.load(&k, now()).await.unwrap().unwrap();
    assert_eq!(got.expires_at, fixed, "Django's fixed expiry is kept");
    assert_eq!(got.data["b"], 2);

    // Signed with a rotated-out secret: still read (the fallback), and re-signed with the
    // current secret on the next save, which Django without fallbacks then reads.
    let (k, _) = db.django_save_with(DJANGO_OLD_SECRET, json!({"old": true}), Value::Null);
    assert_eq!(
        store.load(&k, now()).await.unwrap().unwrap().data["old"],
        true
    );
    store
        .update(&k, &set(&[("new", json!(true))]), now())
        .await
        .unwrap();
    let back = db
        .django_with(
            DJANGO_SECRET,
            &[],
            json!([{"op": "load", "key": std::str::from_utf8(k.as_bytes()).unwrap()}]),
        )
        .remove(0);
    assert_eq!(back["data"]["old"], true);
    assert_eq!(back["data"]["new"], true);

    // Signed with a secret the store does not know: corrupt, and left in place.
    let (k, _) = db.django_save_with("someone-else", json!({"x": 1}), Value::Null);
    let r = store.load(&k, now()).await;
    assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{r:?}");
    let r = store.update(&k, &set(&[("y", json!(2))]), now()).await;
    assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{r:?}");
    let foreign = Shared::django_with(
        &db,
        "someone-else",
        &[],
        json!([{"op": "load", "key": std::str::from_utf8(k.as_bytes()).unwrap()}]),
    );
    assert_eq!(foreign[0]["data"]["x"], 1, "the row is untouched");
}

async fn rust_requests_on_a_django_session_lose_nothing(db: Shared) {
    let (k, _) = db.django_save_with(DJANGO_SECRET, json!({"seed": "django"}), json!(3600));
    let cookie = format!("id={}", std::str::from_utf8(k.as_bytes()).unwrap());
    let h = Arc::new(Harness::new(db.store.clone(), crate::util::server_tier()));
    let tasks: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let (h, c) = (h.clone(), cookie.clone());
            tokio::spawn(async move {
                h.get(&format!("/write?k={name}&v={name}&sleep_ms=100"), Some(&c))
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
    let got = db.django_load(&k);
    assert_eq!(got["found"], true, "{got}");
    assert_eq!(got["data"]["a"], "a", "{got}");
    assert_eq!(got["data"]["b"], "b", "{got}");
    assert_eq!(got["data"]["seed"], "django");
    assert_eq!(got["data"]["_session_expiry"], 3600);
}

async fn keys_that_are_not_djangos_are_refused(db: Shared) {
    let native = SessionId::generate().unwrap().storage_key();
    let r = db.store.create(&native, &fresh(json!({"a": 1}))).await;
    let Err(StoreError::Backend(e)) = r else {
        panic!("{r:?}")
    };
    assert!(e.to_string().contains("Django"), "{e}");
    assert!(db.store.load(&native, now()).await.is_err());
}

async fn browser_close_expiry_refreshes_to_the_cookie_age(db: Shared) {
    let store = DjangoStore::connect(&db.database_url, servers::django_secrets())
        .await
        .unwrap()
        .with_table(&db.table)
        .unwrap()
        .with_session_cookie_age(Duration::hours(1));
    let k = key_for(&store);
    let r = record(
        json!({"a": 1, "_session_expiry": 0}),
        now(),
        now() + Duration::minutes(5),
    );
    store.create(&k, &r).await.unwrap();
    store
        .touch(&k, now() + Duration::days(3), now())
        .await
        .unwrap();
    let got: Record = store.load(&k, now()).await.unwrap().unwrap();
    assert!(got.expires_at > r.expires_at);
    assert!(got.expires_at <= now() + Duration::hours(1));
}

macro_rules! judged_by_django {
    ($db:ident: $($case:ident),*) => {
        mod $db {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::$db().await).await;
                }
            )*
        }
    };
}

#[cfg(feature = "postgres")]
judged_by_django!(postgres:
    django_reads_what_the_store_writes,
    the_store_reads_what_django_writes,
    rust_requests_on_a_django_session_lose_nothing,
    keys_that_are_not_djangos_are_refused,
    browser_close_expiry_refreshes_to_the_cookie_age
);

#[cfg(feature = "mysql")]
judged_by_django!(mysql:
    django_reads_what_the_store_writes,
    the_store_reads_what_django_writes,
    rust_requests_on_a_django_session_lose_nothing,
    keys_that_are_not_djangos_are_refused,
    browser_close_expiry_refreshes_to_the_cookie_age
);

judged_by_django!(sqlite:
    django_reads_what_the_store_writes,
    the_store_reads_what_django_writes,
    rust_requests_on_a_django_session_lose_nothing,
    keys_that_are_not_djangos_are_refused,
    browser_close_expiry_refreshes_to_the_cookie_age
);

#[tokio::test]
async fn store_urls_select_the_django_store_and_need_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("django+sqlite://{}", dir.path().join("d.db").display());
    // Only this test reads these variables.
    std::env::remove_var("DJANGO_SECRET_KEY");
    let err = tidysession::store::open(&url)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("DJANGO_SECRET_KEY"), "{err}");
    std::env::set_var("DJANGO_SECRET_KEY", DJANGO_SECRET);
    std::env::set_var(
        "DJANGO_SECRET_KEY_FALLBACKS",
        format!("{DJANGO_OLD_SECRET}, other"),
    );
    let store = tidysession::store::open(&url).await.unwrap();
    store.maintenance().unwrap().migrate().await.unwrap();
    assert!(format!("{store:?}").contains("DjangoStore"), "{store:?}");
    assert_eq!(store.id_format(), tidysession::store::IdFormat::Django);
    assert!(store.user_index().is_none());
    // The fallback from the environment verifies what the old secret signed.
    let old = DjangoStore::connect(&url, Secrets::new(DJANGO_OLD_SECRET))
        .await
        .unwrap();
    let k = key_for(&old);
    old.create(&k, &fresh(json!({"a": 1}))).await.unwrap();
    assert_eq!(store.load(&k, now()).await.unwrap().unwrap().data["a"], 1);
    assert!(tidysession::store::supported_urls().contains("django+sqlite://PATH"));
}
