"""Settings from the environment, so each test run gets a database schema of its own.

  DJANGO_SECRET_KEY              SECRET_KEY (required)
  DJANGO_SECRET_KEY_FALLBACKS    SECRET_KEY_FALLBACKS, comma-separated
  COMPANION_DATABASE_URL         postgres://USER[:PASSWORD]@HOST[:PORT]/DB
  COMPANION_SCHEMA               the PostgreSQL schema (search_path) holding the tables
"""

import os
from urllib.parse import unquote, urlsplit

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
SECRET_KEY_FALLBACKS = [
    s.strip() for s in os.environ.get("DJANGO_SECRET_KEY_FALLBACKS", "").split(",") if s.strip()
]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
]
# No CSRF middleware: a test project, driven by a test client, not a browser.
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "companion.urls"

_db = urlsplit(os.environ["COMPANION_DATABASE_URL"])
_schema = os.environ.get("COMPANION_SCHEMA", "public")
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": unquote(_db.username or ""),
        "PASSWORD": unquote(_db.password or ""),
        "HOST": _db.hostname or "",
        "PORT": str(_db.port or ""),
        "OPTIONS": {"options": f"-c search_path={_schema}"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django's default hashers; both formats the Rust side reads.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
