"""Real Django reading and writing its django_session table, for the DjangoStore tests.

Reads one JSON request on stdin and writes one JSON answer (a list, one entry per op) on
stdout. The Rust tests (crates/tidysession/tests/django_store.rs) run it with the venv that
scripts/django-env.sh creates.

  {"database_url": "postgres://USER@HOST/DB" | "mysql://USER@HOST/DB" | "sqlite:///PATH", "table": T,
   "secret": S, "fallbacks": [F, ...], "ops": [OP, ...]}

  {"op": "load", "key": K}
      SessionStore(session_key=K).load(): {"found", "data", "expiry_date_us"
      (get_expiry_date() in Unix microseconds), "row_expire_date_us", "session_data"}.
  {"op": "save", "data": {...}, "expiry": SECONDS | "ISO-8601" | null}
      A new session saved by Django (set_expiry when given): {"key", "row_expire_date_us",
      "session_data"}.
"""

import datetime
import json
import sys
from urllib.parse import unquote, urlsplit

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def database(url):
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": unquote(url[len("sqlite://"):])}
    if parts.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    if parts.scheme == "mysql":
        # Django's MySQL backend expects MySQLdb; PyMySQL stands in for it.
        import pymysql

        pymysql.install_as_MySQLdb()
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": parts.path.lstrip("/"),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    raise SystemExit(f"unsupported database URL scheme {parts.scheme!r}")


def micros(dt):
    return None if dt is None else (dt - EPOCH) // datetime.timedelta(microseconds=1)


def main():
    req = json.load(sys.stdin)
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY=req["secret"],
        SECRET_KEY_FALLBACKS=req.get("fallbacks", []),
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.sessions"],
        DATABASES={"default": database(req["database_url"])},
        USE_TZ=True,
    )
    django.setup()
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session

    # The tests give each run a table of its own.
    Session._meta.db_table = req.get("table", "django_session")

    def row(key):
        return Session.objects.filter(session_key=key).first()

    out = []
    for op in req["ops"]:
        if op["op"] == "load":
            s = SessionStore(session_key=op["key"])
            data = s.load()
            found = s.session_key is not None
            s._session_cache = data
            r = row(op["key"])
            out.append({
                "found": found,
                "data": data,
                "expiry_date_us": micros(s.get_expiry_date()),
                "row_expire_date_us": micros(r.expire_date) if r else None,
                "session_data": r.session_data if r else None,
            })
        elif op["op"] == "save":
            s = SessionStore()
            for k, v in op["data"].items():
                s[k] = v
            expiry = op.get("expiry")
            if isinstance(expiry, str):
                s.set_expiry(datetime.datetime.fromisoformat(expiry))
            elif expiry is not None:
                s.set_expiry(expiry)
            s.save()
            r = row(s.session_key)
            out.append({
                "key": s.session_key,
                "row_expire_date_us": micros(r.expire_date),
                "session_data": r.session_data,
            })
        else:
            raise SystemExit(f"unknown op {op['op']!r}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
