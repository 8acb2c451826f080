"""Test vectors for tidysession's Django codec, made by the installed Django.

Reads one JSON request on stdin and writes one JSON answer on stdout. The Rust tests
(crates/tidysession/tests/django.rs) run it at test time with the venv that
scripts/django-env.sh creates.

  {"mode": "vectors", "secret": S, "fallbacks": [F, ...], "timestamp": T}
      Everything Django signs, with time.time() fixed at T: Signer, TimestampSigner,
      signing.dumps with and without compression, the database session encoding, the
      signed_cookies session value, values signed with a fallback secret, base62, salted_hmac.
      Dict keys are sorted (the order a serde_json::Map keeps) before Django sees them.

  {"mode": "verify", "secret": S, "fallbacks": [...], "items": [ITEM, ...]}
      Django reads what Rust wrote. ITEM: {"op": OP, "value": V, "salt": SALT or null,
      "max_age": SECONDS or null, "keys": "configured" | "fallbacks_only"}. OP is one of
      "unsign", "timestamp_unsign", "loads", "session_decode", "signed_cookie_decode".
      Answers {"ok": true, "result": R} or {"ok": false, "error": EXCEPTION_NAME} per item.
"""

import json
import sys
import time
import zlib
from unittest import mock


def canon(obj):
    """Sorts dict keys recursively, the order a serde_json::Map (a BTreeMap) keeps."""
    if isinstance(obj, dict):
        return {k: canon(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [canon(v) for v in obj]
    return obj


def setup(secret, fallbacks):
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY=secret,
        SECRET_KEY_FALLBACKS=list(fallbacks),
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.sessions"],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()


OBJECTS = {
    "string": "hello",
    "empty_object": {},
    "flat": {"a": 1, "b": "two", "c": True, "d": None, "e": False},
    "non_ascii": {
        "greeting": "Grüße, Zürich — 世界 🎉",
        "emoji_key_🔑": "ключ",
        "controls": "tab\there\nnew line \"quoted\" back\\slash \x01 \x1f \x7f / é",
    },
    "nested": {
        "cart": {"items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}], "note": None},
        "prefs": {"theme": "dark", "langs": ["de", "fr", "ja"]},
        "deep": {"x": {"y": {"z": [[], {}, [1, [2, [3]]]]}}},
    },
    "numbers": {
        "zero": 0,
        "neg": -42,
        "i64_max": 9223372036854775807,
        "i64_min": -9223372036854775808,
        "u64_max": 18446744073709551615,
        "f_tenth": 0.1,
        "f_one": 1.0,
        "f_neg_zero": -0.0,
        "f_half": -2.5,
        "f_1e15": 1e15,
        "f_1e16": 1e16,
        "f_1_5e16": 1.5e16,
        "f_1e_4": 1e-4,
        "f_1e_5": 1e-5,
        "f_small": 1.2345e-7,
        "f_big": 1.7976931348623157e308,
        "f_tiny": 5e-324,
        "f_pi": 3.141592653589793,
        "f_123456789_125": 123456789.125,
        "f_1e22": 1e22,
        "f_9007199254740993": 9007199254740992.0,
    },
    "list": [1, "two", 3.5, None, [True, False], {"k": "v"}],
    "auth_session": {
        "_auth_user_id": "1",
        "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
        "_auth_user_hash": "0" * 64,
        "_session_expiry": 3600,
    },
    "long": {
        "history": ["/products/%d?page=%d&sort=price" % (i, i % 7) for i in range(120)],
        "text": "lorem ipsum dolor sit amet " * 40,
    },
}


def boundary_strings():
    """Strings whose JSON compresses by exactly 1 byte (kept plain) and by 2 (compressed)."""
    found = {}
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    for n in range(4, 400):
        for shift in range(len(alphabet)):
            s = "".join(alphabet[(i * 7 + shift) % len(alphabet)] for i in range(n))
            s = s + s[: n // 3]
            data = json.dumps(s, separators=(",", ":")).encode()
            saved = len(data) - len(zlib.compress(data))
            if saved in (1, 2) and saved not in found:
                found[saved] = s
            if len(found) == 2:
                return found
    return found


def vectors(req):
    from django.contrib.sessions.backends.cached_db import SessionStore as CachedDbStore
    from django.contrib.sessions.backends.db import SessionStore as DbStore
    from django.contrib.sessions.backends.file import SessionStore as FileStore
    from django.contrib.sessions.backends.signed_cookies import (
        SessionStore as CookieStore,
    )
    from django.core import signing
    from django.utils.crypto import salted_hmac

    secret = req["secret"]
    fallbacks = req["fallbacks"]
    ts = req["timestamp"]
    out = []

    with mock.patch("time.time", return_value=float(ts)):
        for value in ["foo", "", "with:colons:inside", "Grüße 🎉", "x" * 300]:
            for salt in [None, "", "my.salt"]:
                out.append(
                    {
                        "kind": "signer",
                        "value": value,
                        "salt": salt,
                        "signed": signing.Signer(salt=salt).sign(value),
                    }
                )
                out.append(
                    {
                        "kind": "timestamp_signer",
                        "value": value,
                        "salt": salt,
                        "signed": signing.TimestampSigner(salt=salt).sign(value),
                    }
                )
        objects = dict(OBJECTS)
        for saved, s in boundary_strings().items():
            objects["saves_%d_byte" % saved] = s
        for name, obj in objects.items():
            obj = canon(obj)
            for salt in [None, "", "my.salt"]:
                for compress in [False, True]:
                    kwargs = {} if salt is None else {"salt": salt}
                    out.append(
                        {
                            "kind": "dumps",
                            "name": name,
                            "object": obj,
                            "salt": salt,
                            "compress": compress,
                            "signed": signing.dumps(obj, compress=compress, **kwargs),
                        }
                    )
            if isinstance(obj, dict):
                db = DbStore().encode(obj)
                assert db == CachedDbStore().encode(obj) == FileStore().encode(obj)
                cookie = CookieStore()
                cookie.update(obj)
                cookie.save()
                out.append(
                    {"kind": "session", "name": name, "object": obj, "encoded": db}
                )
                out.append(
                    {
                        "kind": "signed_cookie",
                        "name": name,
                        "object": obj,
                        "encoded": cookie.session_key,
                    }
                )
        # Signed by a server whose SECRET_KEY was what is now a fallback.
        for fb in fallbacks:
            for name in ["flat", "long"]:
                obj = canon(OBJECTS[name])
                out.append(
                    {
                        "kind": "fallback_dumps",
                        "name": name,
                        "object": obj,
                        "salt": "django.contrib.sessions.SessionStore",
                        "signed": signing.dumps(
                            obj,
                            key=fb,
                            salt="django.contrib.sessions.SessionStore",
                            compress=True,
                        ),
                    }
                )
            out.append(
                {
                    "kind": "fallback_signer",
                    "value": "foo",
                    "signed": signing.Signer(key=fb, fallback_keys=[]).sign("foo"),
                }
            )

    for n in [0, 1, 61, 62, 123456789, 1700000000, -1, -62, 2**40]:
        out.append({"kind": "b62", "number": n, "encoded": signing.b62_encode(n)})
    for key_salt, value in [("salt", "value"), ("ünï", "çødé 🎉"), ("", "")]:
        out.append(
            {
                "kind": "salted_hmac",
                "key_salt": key_salt,
                "value": value,
                "hex": salted_hmac(key_salt, value, secret, algorithm="sha256").hexdigest(),
            }
        )
    return out


def verify(req):
    from django.conf import settings
    from django.contrib.sessions.backends.db import SessionStore as DbStore
    from django.contrib.sessions.backends.signed_cookies import (
        SessionStore as CookieStore,
    )
    from django.core import signing

    answers = []
    for item in req["items"]:
        op, value, salt = item["op"], item["value"], item.get("salt")
        max_age = item.get("max_age")
        saved = (settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS)
        if item.get("keys") == "fallbacks_only":
            settings.SECRET_KEY = settings.SECRET_KEY_FALLBACKS[0]
            settings.SECRET_KEY_FALLBACKS = settings.SECRET_KEY_FALLBACKS[1:]
        try:
            if op == "unsign":
                result = signing.Signer(salt=salt).unsign(value)
            elif op == "timestamp_unsign":
                result = signing.TimestampSigner(salt=salt).unsign(value, max_age=max_age)
            elif op == "loads":
                kwargs = {} if salt is None else {"salt": salt}
                result = signing.loads(value, max_age=max_age, **kwargs)
            elif op == "session_decode":
                # SessionBase.decode() swallows errors into {}; call what it calls to see them.
                result = signing.loads(value, salt=DbStore().key_salt)
            elif op == "signed_cookie_decode":
                store = CookieStore(session_key=value)
                result = signing.loads(
                    value,
                    max_age=store.get_session_cookie_age(),
                    salt="django.contrib.sessions.backends.signed_cookies",
                )
                assert dict(store.items()) == result
            else:
                raise ValueError("unknown op %r" % op)
            answers.append({"ok": True, "result": result})
        except Exception as exc:  # noqa: BLE001 - the exception's name is the answer
            answers.append({"ok": False, "error": type(exc).__name__})
        finally:
            settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = saved
    return answers


def main():
    req = json.load(sys.stdin)
    setup(req["secret"], req.get("fallbacks", []))
    import django

    if req["mode"] == "vectors":
        answer = {
            "django_version": django.get_version(),
            "zlib_version": zlib.ZLIB_RUNTIME_VERSION,
            "timestamp": req["timestamp"],
            "vectors": vectors(req),
        }
    elif req["mode"] == "verify":
        answer = {"django_version": django.get_version(), "answers": verify(req)}
    else:
        raise SystemExit("unknown mode %r" % req["mode"])
    json.dump(answer, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
