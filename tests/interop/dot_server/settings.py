"""Django settings of the test authorization server.

serve.py sets ``DOT_SERVER_DB`` (the SQLite file) and ``DOT_SERVER_GRACE`` (the refresh-token
grace period, seconds) before Django reads this module.
"""

from __future__ import annotations

import os

from .clients import ACCESS_TOKEN_TTL

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SECRET_KEY = "dot-interop-tests-only"  # a throwaway server on loopback; signs nothing we use
ROOT_URLCONF = "tests.interop.dot_server.urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "oauth2_provider"]
MIDDLEWARE: list[str] = []
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # A file, not ":memory:": every request runs in its own thread with its own connection.
        "NAME": os.environ["DOT_SERVER_DB"],
        # Writers wait for each other (20 s) instead of failing with "database is locked";
        # IMMEDIATE takes the write lock when a transaction starts, so a DOT transaction that
        # reads and then writes never has to upgrade its lock (which SQLite refuses at once).
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }
}

# DOT stores client secrets hashed (hash_client_secret defaults to True) with Django's first
# password hasher. The default PBKDF2 (1,000,000 rounds) costs ~0.25 s of CPU per token call
# on a 2-core machine; MD5 keeps the secrets hashed, as DOT does, at a test's cost.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": ACCESS_TOKEN_TTL,
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": int(os.environ.get("DOT_SERVER_GRACE", "0")),
    # A refresh token presented after its grace period revokes its whole family (every token
    # of that login), as Okta and Auth0 do: a second redemption logs everybody out.
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "SCOPES": {"read": "Read items", "write": "Write items"},
    "DEFAULT_SCOPES": ["read", "write"],
}

# Warnings and errors go to stderr, which the test fixture sends to a log file.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    # "Unauthorized: /api/items" for every 401 is expected here, and would flood the log.
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False}},
}
