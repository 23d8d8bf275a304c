"""A deployment started without ``PASSPORT_ENV=production`` (the line left out of the environment file,
a process started by hand) would run as development: on the demo's published SECRET_KEY, CA and Logbook
keys, with debug pages on. Settings that name a remote database or Redis, or a host name to answer to,
refuse that start; the demo, the tests and a development setup with secrets of its own still start."""

from __future__ import annotations

import pytest

from tests.passport_portal.production_env import start_production

DEMO_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production-0123456789"
PROBE = (
    "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'passport_portal.settings'); django.setup();"
    "from django.conf import settings as s;"
    "from passport_portal.start_checks import start_checks_run; start_checks_run('web process');"
    f"print(s.PASSPORT_ENV, s.DEBUG, s.SECRET_KEY == {DEMO_SECRET_KEY!r},"
    "s.PASSPORT_CA_ENCRYPTION_KEY.startswith('dev-only'))"
)
# Left out of the environment: PASSPORT_ENV and every secret (the demo's stand-ins apply).
EMBEDDED = {
    "PASSPORT_ENV": None,
    "PASSPORT_SECRET_KEY": None,
    "PASSPORT_USERNAME_KEY": None,
    "PASSPORT_CA_ENCRYPTION_KEY": None,
    "PASSPORT_LOGBOOK_KEY": None,
    "PASSPORT_LOGBOOK_SIGNING_KEY": None,
}
LOCAL = {
    "PASSPORT_ALLOWED_HOSTS": None,
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/passport",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}
DEPLOYMENT = {
    "PASSPORT_ALLOWED_HOSTS": "passport.example.com",
    "PASSPORT_BASE_URL": "https://passport.example.com",
    "DATABASE_URL": "postgres://passport:Db-Secret-7@db.internal:5432/passport?sslmode=verify-full",
    "REDIS_URL": "rediss://passport:Redis-Secret-8@redis.internal:6380/0?ssl_cert_reqs=required",
}


def test_a_deployment_without_passport_env_does_not_start_on_the_demo_secrets() -> None:
    started = start_production(PROBE, **EMBEDDED, **DEPLOYMENT)
    assert started.returncode != 0, f"started on the demo's secrets: {started.stdout!r}"
    assert "PASSPORT_ENV=production" in started.stderr
    assert "Secret-" not in started.stderr  # no connection password quoted


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"DATABASE_URL": "postgres://passport:pw@db.internal:5432/passport"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://passport:pw@10.0.0.7/passport"}, "DATABASE_URL"),
        ({"REDIS_URL": "redis://:pw@redis.internal:6379/0"}, "REDIS_URL"),
        ({"PASSPORT_ALLOWED_HOSTS": "localhost,passport.example.com"}, "PASSPORT_ALLOWED_HOSTS"),
    ],
    ids=["database-host", "database-address", "redis-host", "allowed-host"],
)
def test_one_sign_of_a_deployment_is_enough(changes: dict[str, str], named: str) -> None:
    started = start_production(PROBE, **EMBEDDED, **{**LOCAL, **changes})
    assert started.returncode != 0, f"started on the demo's secrets: {started.stdout!r}"
    assert named in started.stderr and "PASSPORT_ENV=production" in started.stderr


def test_one_secret_of_the_demo_left_is_enough() -> None:
    own = {
        "PASSPORT_SECRET_KEY": "k3Yq9vLx2Bz8Wm4Rt6Hn1Pc7Jd5Gf0Sa",
        "PASSPORT_USERNAME_KEY": "Zr8Nw2Qe5Ty7Ui1Op3As6Df9Gh4Jk0Lm",
    }
    started = start_production(PROBE, **{**EMBEDDED, **own, **DEPLOYMENT})
    assert started.returncode != 0
    assert "PASSPORT_CA_ENCRYPTION_KEY" in started.stderr


@pytest.mark.parametrize(
    "changes",
    [
        {"DATABASE_URL": None, "REDIS_URL": None},  # the demo: SQLite, no Redis
        {},  # the tests and CI: PostgreSQL and Redis on loopback
        {"DATABASE_URL": "postgres://passport@%2Frun%2Fpostgresql/passport", "REDIS_URL": "unix:///run/redis.sock"},
        {"DATABASE_URL": "postgres://postgres@[::1]:5432/passport", "REDIS_URL": "redis://localhost:6379/0"},
        {"PASSPORT_ALLOWED_HOSTS": "localhost,127.0.0.1,[::1],testserver,.localhost"},
    ],
    ids=["demo", "loopback", "unix-sockets", "ipv6-localhost", "local-hosts"],
)
def test_development_on_this_host_starts(changes: dict[str, str | None]) -> None:
    started = start_production(PROBE, **EMBEDDED, **{**LOCAL, **changes})
    assert started.returncode == 0, started.stderr
    assert started.stdout.split() == ["development", "True", "True", "True"]


def test_development_with_secrets_of_its_own_may_reach_other_hosts() -> None:
    started = start_production(PROBE, PASSPORT_ENV="development", **DEPLOYMENT)
    assert started.returncode == 0, started.stderr
    assert started.stdout.split()[:3] == ["development", "True", "False"]
