//! The Django codec against the installed Django, run at test time.
//!
//! `interop/django_vectors.py` makes the vectors with real Django (time fixed at
//! [`TIMESTAMP`]) and reads back what Rust writes. The Python comes from
//! `TIDYSESSION_TEST_DJANGO_PYTHON`, by default the virtualenv `scripts/django-env.sh`
//! creates (`.venv-django/bin/python`); without it these tests fail and say how to make it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tidysession::django::{
    b62_encode, decode_session_data, decode_signed_cookie, dumps, encode_session_data,
    encode_signed_cookie, loads, salted_hmac, Secrets, Signer, SigningError, TimestampSigner,
    DEFAULT_SESSION_COOKIE_AGE, DUMPS_SALT, SESSION_SALT, SIGNED_COOKIE_SALT,
};

const SECRET: &str = "django-insecure-ünï-§ecret";
const FALLBACKS: [&str; 2] = ["old-secret-1", "older-secret-2"];
/// When Django signed the vectors: 2023-11-14T22:13:20Z.
const TIMESTAMP: i64 = 1_700_000_000;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn python() -> PathBuf {
    match std::env::var_os("TIDYSESSION_TEST_DJANGO_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => repo_root().join(".venv-django/bin/python"),
    }
}

/// Runs the vector generator with one JSON request and returns its JSON answer.
fn django(request: &Value) -> Value {
    let python = python();
    let script = repo_root().join("interop/django_vectors.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run Django's Python {} ({e}).\n\
                 Create it with `bash scripts/django-env.sh` (a virtualenv with Django in \
                 .venv-django), or point TIDYSESSION_TEST_DJANGO_PYTHON at a Python with \
                 Django 5.2 or newer installed.",
                python.display()
            )
        });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(request.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} {} failed ({}):\n{}\nIs Django installed there? `bash scripts/django-env.sh` sets it up.",
        python.display(),
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn secrets() -> Secrets {
    Secrets::new(SECRET).with_fallbacks(FALLBACKS)
}

/// Django's vectors, made once per test process.
fn vectors() -> &'static [Value] {
    static VECTORS: OnceLock<Vec<Value>> = OnceLock::new();
    VECTORS.get_or_init(|| {
        let answer = django(&json!({
            "mode": "vectors", "secret": SECRET, "fallbacks": FALLBACKS, "timestamp": TIMESTAMP,
        }));
        eprintln!(
            "Django {} (zlib {})",
            answer["django_version"], answer["zlib_version"]
        );
        assert_eq!(answer["timestamp"], TIMESTAMP);
        let vectors = answer["vectors"].as_array().unwrap().clone();
        assert!(vectors.len() > 100, "too few vectors: {}", vectors.len());
        vectors
    })
}

fn of_kind(kind: &str) -> impl Iterator<Item = &'static Value> + '_ {
    let found: Vec<_> = vectors().iter().filter(|v| v["kind"] == kind).collect();
    assert!(!found.is_empty(), "Django made no {kind} vectors");
    found.into_iter()
}

/// A text field of a vector (vectors live for the whole test process).
fn text(v: &'static Value, field: &str) -> &'static str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not text in {v}"))
}

fn salt_of(v: &'static Value) -> Option<&'static str> {
    (!v["salt"].is_null()).then(|| text(v, "salt"))
}

fn signer(v: &'static Value) -> Signer {
    let s = Signer::new(secrets());
    match salt_of(v) {
        Some(salt) => s.with_salt(salt),
        None => s,
    }
}

fn timestamp_signer(salt: Option<&str>) -> TimestampSigner {
    let s = TimestampSigner::new(secrets());
    match salt {
        Some(salt) => s.with_salt(salt),
        None => s,
    }
}

fn object(v: &Value) -> Map<String, Value> {
    v["object"].as_object().cloned().unwrap()
}

/// What Rust writes for a vector, with the time fixed where Django's was.
fn rust_output(v: &'static Value) -> Option<String> {
    let out = match v["kind"].as_str().unwrap() {
        "signer" => signer(v).sign(text(v, "value")),
        "timestamp_signer" => timestamp_signer(salt_of(v)).sign_at(text(v, "value"), TIMESTAMP),
        "dumps" => timestamp_signer(Some(salt_of(v).unwrap_or(DUMPS_SALT)))
            .sign_object_at(&v["object"], v["compress"].as_bool().unwrap(), TIMESTAMP)
            .unwrap(),
        "session" => timestamp_signer(Some(SESSION_SALT))
            .sign_object_at(&object(v), true, TIMESTAMP)
            .unwrap(),
        "signed_cookie" => timestamp_signer(Some(SIGNED_COOKIE_SALT))
            .sign_object_at(&object(v), true, TIMESTAMP)
            .unwrap(),
        "b62" => b62_encode(v["number"].as_i64().unwrap()),
        "salted_hmac" => salted_hmac(
            text(v, "key_salt").as_bytes(),
            text(v, "value").as_bytes(),
            SECRET.as_bytes(),
        )
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect(),
        // Made with a fallback as the secret key: Rust signs with the newest only.
        "fallback_dumps" | "fallback_signer" => return None,
        other => panic!("unknown vector kind {other}"),
    };
    Some(out)
}

fn django_output(v: &'static Value) -> &'static str {
    ["signed", "encoded", "hex"]
        .into_iter()
        .find(|f| v[*f].is_string())
        .map(|f| text(v, f))
        .unwrap_or_else(|| panic!("no output in {v}"))
}

#[test]
fn django_signing_matches_django_byte_for_byte() {
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for v in vectors() {
        let Some(ours) = rust_output(v) else { continue };
        checked += 1;
        if ours != django_output(v) {
            mismatches.push(format!(
                "{v}\n  django: {}\n  rust:   {ours}",
                django_output(v)
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(checked > 100, "only {checked} vectors compared");
    // The vectors cover compressed and uncompressed payloads, and both sides of the
    // "compress only when it saves 2 bytes" rule.
    let dumps = |name: &str| {
        of_kind("dumps")
            .find(|v| v["name"] == name && v["compress"] == true && v["salt"].is_null())
            .map(|v| text(v, "signed"))
            .unwrap()
    };
    assert!(dumps("long").starts_with('.'));
    assert!(dumps("saves_2_byte").starts_with('.'));
    assert!(!dumps("saves_1_byte").starts_with('.'));
    assert!(!dumps("flat").starts_with('.'));
    assert!(of_kind("session").any(|v| text(v, "encoded").starts_with('.')));
    assert!(of_kind("signed_cookie").any(|v| text(v, "encoded").starts_with('.')));
}

#[test]
fn django_output_decodes_in_rust() {
    let s = secrets();
    for v in of_kind("signer") {
        assert_eq!(
            signer(v).unsign(text(v, "signed")),
            Ok(text(v, "value")),
            "{v}"
        );
    }
    for v in of_kind("timestamp_signer") {
        let got = timestamp_signer(salt_of(v)).unsign(text(v, "signed"), None);
        assert_eq!(got, Ok(text(v, "value")), "{v}");
    }
    for v in of_kind("dumps") {
        let got: Value = loads(
            text(v, "signed"),
            &s,
            salt_of(v).unwrap_or(DUMPS_SALT),
            None,
        )
        .unwrap_or_else(|e| panic!("{e}: {v}"));
        assert_eq!(got, v["object"], "{v}");
    }
    for v in of_kind("session") {
        let got = decode_session_data(text(v, "encoded"), &s);
        assert_eq!(got, Ok(object(v)), "{v}");
    }
    for v in of_kind("signed_cookie") {
        // Signed at TIMESTAMP, so read as of shortly after.
        let now = UNIX_EPOCH + Duration::from_secs(TIMESTAMP as u64 + 5);
        let got = timestamp_signer(Some(SIGNED_COOKIE_SALT)).unsign_object_at::<Map<_, _>>(
            text(v, "encoded"),
            Some(DEFAULT_SESSION_COOKIE_AGE),
            now,
        );
        assert_eq!(got, Ok(object(v)), "{v}");
    }
}

#[test]
fn django_values_signed_with_a_fallback_secret_are_accepted() {
    let only_current = Secrets::new(SECRET);
    for v in of_kind("fallback_dumps") {
        let got: Result<Value, _> = loads(text(v, "signed"), &secrets(), SESSION_SALT, None);
        assert_eq!(got, Ok(v["object"].clone()), "{v}");
        assert_eq!(
            decode_session_data(text(v, "signed"), &secrets()),
            Ok(object(v))
        );
        let without: Result<Value, _> = loads(text(v, "signed"), &only_current, SESSION_SALT, None);
        assert_eq!(without, Err(SigningError::BadSignature), "{v}");
    }
    assert_eq!(of_kind("fallback_dumps").count(), 2 * FALLBACKS.len());
    for v in of_kind("fallback_signer") {
        assert_eq!(Signer::new(secrets()).unsign(text(v, "signed")), Ok("foo"));
        assert_eq!(
            Signer::new(only_current.clone()).unsign(text(v, "signed")),
            Err(SigningError::BadSignature)
        );
    }
}

/// Every character of the signature changed in turn, and the value's text changed: refused.
#[test]
fn django_tampered_values_are_rejected() {
    let s = secrets();
    let mut tried = 0;
    for v in of_kind("dumps")
        .filter(|v| v["salt"].is_null())
        .chain(of_kind("session"))
    {
        let original = django_output(v);
        let salt = if v["kind"] == "session" {
            SESSION_SALT
        } else {
            DUMPS_SALT
        };
        let (payload, signature) = original.rsplit_once(':').unwrap();
        assert_eq!(signature.len(), 43);
        for i in 0..signature.len() {
            let mut bytes = signature.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = format!("{payload}:{}", String::from_utf8(bytes).unwrap());
            let got: Result<Value, _> = loads(&tampered, &s, salt, None);
            assert_eq!(got, Err(SigningError::BadSignature), "{tampered}");
            tried += 1;
        }
        for i in 0..payload.len() {
            let mut bytes = payload.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
            let tampered = format!("{}:{signature}", String::from_utf8(bytes).unwrap());
            let got: Result<Value, _> = loads(&tampered, &s, salt, None);
            assert_eq!(got, Err(SigningError::BadSignature), "{tampered}");
        }
        for tampered in [
            format!("{original}A"),
            original[..original.len() - 1].to_owned(),
            format!("{payload}:"),
            payload.to_owned(),
        ] {
            let got: Result<Value, _> = loads(&tampered, &s, salt, None);
            assert!(got.is_err(), "{tampered}");
        }
        // Another salt or another secret: refused too.
        let got: Result<Value, _> = loads(original, &s, "another.salt", None);
        assert_eq!(got, Err(SigningError::BadSignature));
        let got: Result<Value, _> = loads(original, &Secrets::new("other"), salt, None);
        assert_eq!(got, Err(SigningError::BadSignature));
    }
    assert!(tried > 1000, "only {tried} tampered signatures");
    // A database session value is not a signed-cookie session, and the reverse.
    let session = of_kind("session").next().unwrap();
    assert_eq!(
        decode_signed_cookie(text(session, "encoded"), &s, Duration::MAX),
        Err(SigningError::BadSignature)
    );
    let cookie = of_kind("signed_cookie").next().unwrap();
    assert_eq!(
        decode_session_data(text(cookie, "encoded"), &s),
        Err(SigningError::BadSignature)
    );
}

#[test]
fn django_values_older_than_max_age_are_expired() {
    let s = secrets();
    let v = of_kind("dumps").find(|v| v["name"] == "flat").unwrap();
    let signed = text(v, "signed");
    let signer = timestamp_signer(Some(salt_of(v).unwrap_or(DUMPS_SALT)));
    let max_age = Duration::from_secs(60);
    let at = |secs: i64, nanos: u32| UNIX_EPOCH + Duration::new(secs as u64, nanos);
    // Exactly max_age old: still good (Django: expired only when age > max_age).
    let got: Result<Value, _> =
        signer.unsign_object_at(signed, Some(max_age), at(TIMESTAMP + 60, 0));
    assert_eq!(got, Ok(v["object"].clone()));
    let got: Result<Value, _> =
        signer.unsign_object_at(signed, Some(max_age), at(TIMESTAMP + 60, 1_000));
    assert!(matches!(got, Err(SigningError::Expired { .. })), "{got:?}");
    // Signed in 2023, so older than a minute now; with no max_age, any age is fine.
    let got: Result<Value, _> = loads(signed, &s, DUMPS_SALT, Some(max_age));
    assert!(matches!(got, Err(SigningError::Expired { .. })), "{got:?}");
    let got: Result<Value, _> = loads(signed, &s, DUMPS_SALT, None);
    assert!(got.is_ok());
    // The signed-cookie backend refuses cookies older than SESSION_COOKIE_AGE.
    let cookie = of_kind("signed_cookie").next().unwrap();
    let got = decode_signed_cookie(text(cookie, "encoded"), &s, DEFAULT_SESSION_COOKIE_AGE);
    assert!(matches!(got, Err(SigningError::Expired { .. })), "{got:?}");
    // A tampered expired value is a bad signature, not "expired".
    let tampered = signed.replace(':', "x:");
    let got: Result<Value, _> = loads(&tampered, &s, DUMPS_SALT, Some(max_age));
    assert_eq!(got, Err(SigningError::BadSignature));
}

/// Rust signs now, with the current secret; Django (the installed one) reads it back.
#[test]
fn django_reads_what_rust_writes() {
    let s = secrets();
    let objects: Vec<Value> = vectors()
        .iter()
        .filter(|v| v["kind"] == "session")
        .map(|v| v["object"].clone())
        .collect();
    let mut items = Vec::new();
    let mut expected = Vec::new();
    let mut push = |item: Value, want: Value| {
        items.push(item);
        expected.push(want);
    };
    for value in ["foo", "Grüße 🎉", "a:b:c", ""] {
        let signed = Signer::new(s.clone()).with_salt("my.salt").sign(value);
        push(
            json!({"op": "unsign", "value": signed, "salt": "my.salt"}),
            json!({"ok": true, "result": value}),
        );
        let signed = TimestampSigner::new(s.clone()).sign(value);
        push(
            json!({"op": "timestamp_unsign", "value": signed, "salt": null, "max_age": 60}),
            json!({"ok": true, "result": value}),
        );
    }
    for object in &objects {
        let map = object.as_object().unwrap();
        for compress in [false, true] {
            let signed = dumps(object, &s, DUMPS_SALT, compress).unwrap();
            push(
                json!({"op": "loads", "value": signed, "salt": null, "max_age": 60}),
                json!({"ok": true, "result": object}),
            );
        }
        push(
            json!({"op": "session_decode", "value": encode_session_data(map, &s).unwrap()}),
            json!({"ok": true, "result": object}),
        );
        push(
            json!({"op": "signed_cookie_decode", "value": encode_signed_cookie(map, &s).unwrap()}),
            json!({"ok": true, "result": object}),
        );
    }
    // Rust signs with the newest secret: a Django that knows only the fallbacks refuses it.
    let signed = dumps(&objects[0], &s, DUMPS_SALT, false).unwrap();
    push(
        json!({"op": "loads", "value": signed, "keys": "fallbacks_only"}),
        json!({"ok": false, "error": "BadSignature"}),
    );
    // Rust signed long ago (as Django would see it): expired for Django too.
    let old = TimestampSigner::new(s.clone()).sign_at("foo", TIMESTAMP);
    push(
        json!({"op": "timestamp_unsign", "value": old, "salt": null, "max_age": 60}),
        json!({"ok": false, "error": "SignatureExpired"}),
    );
    let answer = django(&json!({
        "mode": "verify", "secret": SECRET, "fallbacks": FALLBACKS, "items": items,
    }));
    let answers = answer["answers"].as_array().unwrap();
    assert_eq!(answers.len(), expected.len());
    for ((item, want), got) in items.iter().zip(&expected).zip(answers) {
        assert_eq!(got, want, "Django read {item}");
    }
}

/// Garbage, truncated and oddly signed input: an error every time, never a panic.
#[test]
fn django_codec_never_panics_on_garbage() {
    let s = secrets();
    let data: Map<String, Value> = json!({"long": "x".repeat(500), "n": 1, "é": [1.5, null]})
        .as_object()
        .cloned()
        .unwrap();
    let valid = [
        encode_session_data(&data, &s).unwrap(),
        encode_signed_cookie(&data, &s).unwrap(),
        dumps(&data, &s, DUMPS_SALT, false).unwrap(),
        Signer::new(s.clone()).sign("value"),
    ];
    let mut inputs: Vec<String> = Vec::new();
    for v in &valid {
        for end in 0..v.len() {
            inputs.push(v[..end].to_owned());
            inputs.push(v[end..].to_owned());
        }
    }
    inputs.extend(
        [
            "",
            ":",
            "::",
            ":::",
            ".",
            ".:",
            "..:..:..",
            "a:b",
            "a:b:c",
            "é:ü:🎉",
            "\0:\0",
            "-:-:-",
            "=:=:=",
        ]
        .map(String::from),
    );
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for len in 0..300 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                b"AZaz09-_.:=+/\xc3\xa9"[(seed % 15) as usize]
            })
            .collect();
        inputs.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    for input in &inputs {
        let _ = decode_session_data(input, &s);
        let _ = decode_signed_cookie(input, &s, Duration::ZERO);
        let _ = loads::<Value>(input, &s, DUMPS_SALT, Some(Duration::MAX));
        let _ = Signer::new(s.clone()).unsign(input);
        let _ = TimestampSigner::new(s.clone()).unsign_at(input, Some(Duration::ZERO), UNIX_EPOCH);
        let _ = TimestampSigner::new(s.clone()).unsign_at(
            input,
            Some(Duration::MAX),
            SystemTime::now(),
        );
    }
    // Validly signed, but not a decodable payload: the signature passes, the payload fails.
    let signer = Signer::new(s.clone()).with_salt(SESSION_SALT);
    let zlib_truncated = {
        let good = encode_session_data(&data, &s).unwrap();
        let payload = good.split(':').next().unwrap().to_owned();
        payload[..payload.len() - 8].to_owned()
    };
    for payload in [
        "!!!!",
        "A",
        ".AAAA",
        ".",
        zlib_truncated.as_str(),
        "bm90IGpzb24", // "not json"
        "WzEsMl0",     // [1,2]: JSON, but not a session's object
        "Ilx1ZDgwMCI", // "\ud800": a lone surrogate
    ] {
        for ts in ["1r31eq", "-", "", "!!", "zzzzzzzzzzzzzzzzzzzzzz"] {
            let signed = signer.sign(&format!("{payload}:{ts}"));
            let got = decode_session_data(&signed, &s);
            assert!(
                matches!(
                    got,
                    Err(SigningError::BadPayload(_) | SigningError::Malformed(_))
                ),
                "{payload}:{ts} gave {got:?}"
            );
        }
        let got = decode_session_data(&signer.sign(payload), &s);
        assert!(matches!(got, Err(SigningError::Malformed(_))), "{got:?}");
    }
}

/// `DjangoSignedCookies`: Django's `signed_cookies` backend reads the cookie Rust sets, and
/// Rust reads the cookie Django set, through the request's `Cookie` header.
#[test]
fn django_signed_cookie_sessions_round_trip_through_headers() {
    use http::header::{HeaderMap, HeaderValue, COOKIE};
    use tidysession::django::DjangoSignedCookies;

    let s = secrets();
    let cookies = DjangoSignedCookies::new(s.clone());
    let data = json!({
        "_auth_user_id": "1", "cart": {"items": ["böök", 2, 0.5]}, "greeting": "世界 🎉"
    })
    .as_object()
    .cloned()
    .unwrap();
    let set = cookies.cookie(&data).unwrap();
    let header = set.to_string();
    for attribute in [
        "sessionid=",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=1209600",
    ] {
        assert!(header.contains(attribute), "{header}");
    }
    // Django (its SessionStore for this backend) reads what Rust set.
    let answer = django(&json!({
        "mode": "verify", "secret": SECRET, "fallbacks": FALLBACKS,
        "items": [{"op": "signed_cookie_decode", "value": set.value()}],
    }));
    assert_eq!(answer["answers"][0], json!({"ok": true, "result": data}));

    // Rust reads what Django set (signed in the past, so without the age limit), among
    // other cookies; forged and missing cookies read as empty sessions.
    let django_cookie = of_kind("signed_cookie").next().unwrap();
    let old = DjangoSignedCookies::new(s.clone()).with_max_age(Duration::MAX);
    let mut headers = HeaderMap::new();
    let line = format!(
        "csrftoken=abc; sessionid={}; theme=dark",
        text(django_cookie, "encoded")
    );
    headers.insert(COOKIE, HeaderValue::from_str(&line).unwrap());
    assert_eq!(old.read(&headers), object(django_cookie));
    assert!(cookies.read(&headers).is_empty(), "older than two weeks");
    assert!(cookies.try_read(&headers).is_err());
    headers.insert(
        COOKIE,
        HeaderValue::from_str(&format!("sessionid={}x", set.value())).unwrap(),
    );
    assert!(cookies.read(&headers).is_empty(), "forged");
    assert_eq!(cookies.try_read(&HeaderMap::new()), Ok(None));
    // Emptied data removes the cookie.
    let removal = cookies.cookie(&Map::new()).unwrap().to_string();
    assert!(
        removal.starts_with("sessionid=;") && removal.contains("Max-Age=0"),
        "{removal}"
    );
}
