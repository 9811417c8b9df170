"""Settings from the environment, and the embedded default they fall back to."""

import pytest

from gateway.platform.config import ConfigError, Settings
from gateway.usecases.services import Services


def test_nothing_set_is_the_embedded_default():
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert settings.jobs_in_process
    assert settings.credly_dry_run
    resolved = settings.with_instance("/srv/instance")
    assert resolved.database_url == "sqlite:////srv/instance/gateway.sqlite3"
    assert resolved.mode_line().startswith("EMBEDDED DEFAULT MODE")
    assert "credly=dry-run" in resolved.mode_line()


def test_production_settings_are_read_and_secrets_kept_out_of_the_mode_line():
    env = {
        "DATABASE_URL": "postgresql://gw:hunter2@db.internal/gateway",
        "REDIS_URL": "redis://:pw@cache.internal:6379/0",
        "CREDLY_API_BASE": "https://sandbox-api.credly.com/v1/",
        "CREDLY_ORGANIZATION_ID": "org-1",
        "CREDLY_AUTH_TOKEN": "tok-secret",
        "CREDLY_TOKEN_EXPIRES_ON": "2027-05-01",
        "CREDLY_BADGE_TEMPLATES": "RMA=tmpl-rma, RPT=tmpl-rpt",
        "BADGE_EXPIRES": "true",
        "CREDLY_REVOKED_IS_DUPLICATE": "true",
        "OAUTH_TOKEN_EXPIRES_IN": "600",
    }
    settings = Settings.from_env(env)
    assert settings.credly_api_base == "https://sandbox-api.credly.com/v1"
    assert settings.credly_badge_templates == {"RMA": "tmpl-rma", "RPT": "tmpl-rpt"}
    assert settings.credly_token_expires_on.isoformat() == "2027-05-01"
    assert settings.badge_expires and settings.token_expires_in == 600
    assert settings.credly_revoked_is_duplicate
    assert not settings.credly_dry_run and not settings.jobs_in_process
    line = settings.mode_line()
    assert line.startswith("production mode")
    assert "hunter2" not in line and "tok-secret" not in line and "pw@" not in line
    assert "tok-secret" not in repr(settings)


CREDLY = {
    "CREDLY_API_BASE": "https://sandbox-api.credly.com/v1",
    "CREDLY_ORGANIZATION_ID": "org-1",
    "CREDLY_AUTH_TOKEN": "tok-secret",
}
POSTGRES = {"DATABASE_URL": "postgresql://gw@db.internal/gateway"}
REDIS = {"REDIS_URL": "redis://cache.internal:6379/0"}


@pytest.mark.parametrize(
    ("env", "start", "named"),
    [
        ({**POSTGRES, **REDIS, **CREDLY}, "production mode: ", ()),
        (
            {**POSTGRES, **REDIS},
            "mixed mode (dry-run Credly, not for production): ",
            ("database=PostgreSQL postgresql://gw@db.internal/gateway", "credly=dry-run"),
        ),
        (
            POSTGRES,
            "mixed mode (in-process jobs and dry-run Credly, not for production): ",
            ("jobs=in-process", "credly=dry-run"),
        ),
        (
            {**REDIS, **CREDLY},
            "mixed mode (SQLite, not for production): ",
            ("database=SQLite sqlite:///", "jobs=Redis redis://cache.internal:6379/0"),
        ),
    ],
)
def test_the_mode_line_says_embedded_only_for_the_embedded_default(env, start, named):
    line = Settings.from_env(env).with_instance("/srv/instance").mode_line()
    assert line.startswith(start), line
    assert "EMBEDDED" not in line.upper()
    assert all(part in line for part in named), line


def test_badge_templates_accept_json():
    settings = Settings.from_env({"CREDLY_BADGE_TEMPLATES": '{"RMA": "a", "MT": "b"}'})
    assert settings.credly_badge_templates == {"RMA": "a", "MT": "b"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OAUTH_TOKEN_EXPIRES_IN", "soon"),
        ("CREDLY_TOKEN_EXPIRES_ON", "05/01/2027"),
        ("CREDLY_BADGE_TEMPLATES", "RMA"),
        ("CREDLY_BADGE_TEMPLATES", "{not json"),
        ("JOB_CONCURRENCY", "many"),
        ("JOB_CONCURRENCY", "0"),
        ("RELAY_INTERVAL_SECONDS", "0"),
        ("PUBLIC_BASE_URL", "verify.example.org"),
        ("PUBLIC_BASE_URL", "ftp://verify.example.org"),
        ("ISSUER_URL", "https://example.org/?q=1"),
        ("TIME_ZONE", "Mars/Olympus_Mons"),
        ("TIME_ZONE", "localtime"),  # whatever the machine is set to
        ("TIME_ZONE", "/usr/share/zoneinfo/America/Chicago"),
        ("TIME_ZONE", "posix/America/Chicago"),
        ("TIME_ZONE", "posixrules"),
        ("DATABASE_CONNECT_TIMEOUT_SECONDS", "1"),
        ("DATABASE_POOL_TIMEOUT_SECONDS", "0"),
        ("DATABASE_STATEMENT_TIMEOUT_MS", "-1"),
        ("DATABASE_STATEMENT_TIMEOUT_MS", "10s"),
        ("TRUSTED_PROXIES", "-1"),
        ("OAUTH_TOKEN_EXPIRES_IN", "0"),
        ("OAUTH_TOKEN_EXPIRES_IN", "-5"),
        ("OAUTH_TOKEN_EXPIRES_IN", "2147483648"),  # past any integer column
        ("RECEIPT_RETENTION_DAYS", "3000000"),  # past any date
        ("SUBSCRIPTION_RETENTION_DAYS", "0"),
        ("SUBSCRIPTION_RETENTION_DAYS", "3000000"),
        ("SUBSCRIPTION_RATE_LIMIT", "often"),
        ("SUBSCRIPTION_WATCH_RATE_LIMIT", "often"),
        ("SUBSCRIPTION_WATCH_RATE_LIMIT", "0/hour"),
        ("JOB_TIMEOUT_SECONDS", str(10**30)),
        ("WEB_WORKERS", "0"),
        ("WEB_THREADS", "0"),
        ("WEB_WORKERS", "1001"),  # a digit too many: more than a machine has room for
        ("WEB_THREADS", "60000"),
        ("JOB_CONCURRENCY", "640000"),
        ("CREDLY_MAX_CONNECTIONS", "10000"),
        ("OAUTH_TOKEN_EXPIRES_IN", "1_000"),  # Python's int() takes these; not a setting
        ("OAUTH_TOKEN_EXPIRES_IN", "\u0663\u0666\u0660\u0660"),
        ("JOB_RETRY_BASE_SECONDS", "-1"),
        ("JOB_TIMEOUT_SECONDS", "0"),
        ("CREDLY_TIMEOUT_SECONDS", "0"),
        ("DELIVERY_TIMEOUT_SECONDS", "0"),
        ("BADGE_EXPIRES", "ture"),
        ("JOBS_SYNCHRONOUS", "maybe"),
        ("WEBHOOK_ALLOW_PRIVATE_TARGETS", "2"),
        ("WEBHOOK_ALLOW_PLAIN_HTTP", "maybe"),
        ("VERIFY_RATE_LIMIT_AUTHENTICATED", "0/minute"),
        ("VERIFY_RATE_LIMIT", "60/minute;0/hour"),
        ("VERIFY_RATE_LIMIT", "10/0 seconds"),  # `limits` would count 10 a second
        ("CREDLY_WEBHOOK_CHECKS", "600 per 0 hour"),
        ("OAUTH_FAILURE_RATE_LIMIT", "20/minute;5/00 seconds"),
        ("LOG_LEVEL", "LOUD"),
        ("SWEEP_TIME", "\u00b2:30"),  # a digit to isdigit(), not to int()
        ("SWEEP_TIME", "\u0661\u0662:30"),  # Arabic-Indic digits
        ("SWEEP_TIME", "0002:0030"),  # HH:MM (or H:MM)
        ("SWEEP_TIME", "2:3"),
        ("SWEEP_TIME", "24:00"),
        ("SWEEP_TIME", "02:60"),
        ("DATABASE_URL", "notaurl"),
        ("DATABASE_URL", "mysql://db.internal/gateway"),
        ("REDIS_URL", "http://cache.internal"),
    ],
)
def test_bad_values_name_the_setting(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_public_addresses_lose_their_trailing_slash_and_time_zones_are_iana_names():
    settings = Settings.from_env(
        {"PUBLIC_BASE_URL": "https://verify.example.org/", "TIME_ZONE": "America/Chicago"}
    )
    assert settings.public_base_url == "https://verify.example.org"
    assert settings.time_zone == "America/Chicago"


def test_partial_credly_settings_are_refused():
    with pytest.raises(ConfigError, match="CREDLY_AUTH_TOKEN"):
        Settings.from_env(
            {"CREDLY_API_BASE": "https://api.credly.com/v1", "CREDLY_ORGANIZATION_ID": "o"}
        )


DIRECTORY = {
    "DIRECTORY_BASE_URL": "https://directory.example/v2",
    "DIRECTORY_TOKEN_URL": "https://directory.example/oauth/token",
    "DIRECTORY_CLIENT_ID": "gateway",
    "DIRECTORY_CLIENT_SECRET": "dir-secret",
}


@pytest.mark.parametrize("name", ["CREDLY_API_BASE", "DIRECTORY_BASE_URL", "DIRECTORY_TOKEN_URL"])
@pytest.mark.parametrize("value", ["api.credly.com/v1", "ftp://x", "https://"])
def test_the_credly_and_directory_addresses_must_be_http_urls(name, value):
    """A typo there would be accepted at start and fail every job that calls the service."""
    with pytest.raises(ConfigError, match=f"^{name} must be an absolute http\\(s\\) URL"):
        Settings.from_env({**CREDLY, **DIRECTORY, name: value})


def test_the_directory_token_url_is_kept_as_given_and_base_urls_lose_their_slash():
    settings = Settings.from_env(
        {
            **DIRECTORY,
            "DIRECTORY_BASE_URL": "https://directory.example/v2/",
            "DIRECTORY_TOKEN_URL": "https://directory.example/token/?realm=a",
        }
    )
    assert settings.directory_base_url == "https://directory.example/v2"
    assert settings.directory_token_url == "https://directory.example/token/?realm=a"


@pytest.mark.parametrize(
    ("value", "on"), [("true", True), ("ON", True), ("1", True), ("off", False)]
)
def test_on_off_settings_take_the_usual_words(value, on):
    assert Settings.from_env({"BADGE_EXPIRES": value}).badge_expires is on


@pytest.mark.parametrize(
    ("name", "value", "field", "read"),
    [
        ("LOG_LEVEL", " warn", "log_level", "WARNING"),
        ("LOG_LEVEL", "info", "log_level", "INFO"),
        ("WEB_TIMEOUT", "0", "web_timeout", 0),
        ("ISSUER_NAME", "   ", "issuer_name", Settings.issuer_name),  # spaces: unset, warned of
        ("ISSUER_NAME", " AMT ", "issuer_name", "AMT"),
        ("ISSUER_CONTACT", "  ", "issuer_contact", None),
        ("QUEUE_NAME", " ", "queue_name", Settings.queue_name),
        ("REDIS_URL", "unix:///run/redis.sock?db=2", "redis_url", "unix:///run/redis.sock?db=2"),
        ("REDIS_URL", "redis://cache.internal", "redis_url", "redis://cache.internal"),
        ("REDIS_URL", "redis://cache.internal:6379/", "redis_url", "redis://cache.internal:6379/"),
        (
            "REDIS_URL",
            "rediss://cache.internal/0?ssl_cert_reqs=none&socket_timeout=2",
            "redis_url",
            "rediss://cache.internal/0?ssl_cert_reqs=none&socket_timeout=2",
        ),
        (
            "DATABASE_URL",
            "postgresql://db/gw?sslmode=require&connect_timeout=3",
            "database_url",
            "postgresql://db/gw?sslmode=require&connect_timeout=3",
        ),
        ("DATABASE_URL", "postgres://db:5432/gw", "database_url", "postgres://db:5432/gw"),
        (
            "DATABASE_URL",
            "postgresql:///gw?host=/run/postgresql",
            "database_url",
            "postgresql:///gw?host=/run/postgresql",
        ),
        ("WEB_BIND", "[::1]:8000", "web_bind", "[::1]:8000"),
        ("WEB_BIND", "[fe80::1%eth0]:8000", "web_bind", "[fe80::1%eth0]:8000"),
        ("WEB_BIND", "[::ffff:10.0.0.1]:8000", "web_bind", "[::ffff:10.0.0.1]:8000"),
        ("WEB_BIND", "unix:/run/gateway.sock", "web_bind", "unix:/run/gateway.sock"),
        ("WEB_BIND", "fd://3", "web_bind", "fd://3"),
        ("WEB_BIND", "0.0.0.0:8000", "web_bind", "0.0.0.0:8000"),
        ("WEB_BIND", "gateway.internal:80", "web_bind", "gateway.internal:80"),
        ("WEB_BIND", "unix:///run/gateway.sock", "web_bind", "unix:///run/gateway.sock"),
        (
            "PUBLIC_BASE_URL",
            " https://verify.example.org:8443/ ",
            "public_base_url",
            "https://verify.example.org:8443",
        ),
        (
            "REDIS_URL",
            "rediss://cache.internal:6380/0",
            "redis_url",
            "rediss://cache.internal:6380/0",
        ),
        (
            "DATABASE_URL",
            "postgresql+psycopg://db/gw",
            "database_url",
            "postgresql+psycopg://db/gw",
        ),
    ],
)
def test_usual_spellings_of_a_setting_are_taken(name, value, field, read):
    assert getattr(Settings.from_env({name: value}), field) == read


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("DATABASE_URL", "postgresql://gw:s3cret@db:notaport/gw", "must be a URL such as"),
        ("DATABASE_URL", "postgresql://gw:s3cret@db:99999/gw", "port must be from 1 to 65535"),
        ("DATABASE_URL", "postgresql://gw:s3cret@db:0/gw", "port must be from 1 to 65535"),
        ("DATABASE_URL", "postgresql+psycopg2://gw:s3cret@db/gw", "speaks to PostgreSQL with psy"),
        ("DATABASE_URL", "postgresql+asyncpg://gw:s3cret@db/gw", "use postgresql:// or postgresql"),
        ("DATABASE_URL", "sqlite+aiosqlite:///gw.sqlite3", "must be a URL starting"),
        ("REDIS_URL", "redis://:s3cret@cache:notaport/8", "is not a Redis URL"),
        ("REDIS_URL", "redis://:s3cret@cache:65536/8", "is not a Redis URL"),
        ("REDIS_URL", "redis://:s3cret@cache:0/8", "port must be from 1 to 65535"),
        ("REDIS_URL", "redis://:s3cret@cache:6379/8x", "database must be a number 0 or more"),
        ("REDIS_URL", "redis://:s3cret@cache:6379/-1", "database must be a number 0 or more"),
        ("REDIS_URL", "redis://:s3cret@cache:6379/1_0", "database must be a number 0 or more"),
        ("REDIS_URL", "redis://:s3cret@cache:6379/0/8", "database must be a number 0 or more"),
        ("REDIS_URL", "redis://:s3cret@cache:6379/0?db=x", "is not a Redis URL"),
        ("REDIS_URL", "redis://:s3cret@cache:6379/0?db=-1", "database must be a number 0 or"),
        ("REDIS_URL", "unix:/run/redis.sock", "must be a URL starting"),  # redis-py refuses it
        ("REDIS_URL", "redis://:s3cret@cache:6379/99999999999", "database must be a number 0"),
        ("REDIS_URL", "redis://:s3cret@cache:6379/0?bogus=1", "redis-py takes no option bogus"),
        ("REDIS_URL", "redis://:s3cret@[::1", "REDIS_URL is not a URL"),
        ("DATABASE_URL", "postgresql://gw:s3cret@db/gw?sslmod=1", 'option "sslmod"'),
        ("PUBLIC_BASE_URL", "https://[::1", "PUBLIC_BASE_URL is not a URL"),
        ("WEB_BIND", "127.0.0.1:99999", "port must be from 1 to 65535"),
        ("WEB_BIND", "127.0.0.1:0", "port must be from 1 to 65535"),
        ("WEB_BIND", "127.0.0.1:abc", "must be HOST:PORT"),
        ("WEB_BIND", "fd://three", "must be HOST:PORT"),
        # gunicorn: a path of nothing (it then never serves), a host of nothing (every
        # interface), a bare host (port 8000), anything after a second colon (ignored)
        ("WEB_BIND", "unix:", "must be followed by the socket's path"),
        ("WEB_BIND", "unix://", "must be followed by the socket's path"),
        ("WEB_BIND", ":80", "must be HOST:PORT"),
        ("WEB_BIND", "abc", "must be HOST:PORT"),
        ("WEB_BIND", "[::1]", "must be HOST:PORT"),
        ("WEB_BIND", "127.0.0.1:80:99", "must be HOST:PORT"),
        ("WEB_BIND", "::1:8000", "must be HOST:PORT"),
        # brackets around no IPv6 address, which gunicorn would fail to listen on
        ("WEB_BIND", "[a:b]:8000", "must be HOST:PORT"),
        ("WEB_BIND", "[1.2.3.4]:8000", "must be HOST:PORT"),
        *(
            (name, f"https://gw:s3cret@example.org:{port}/v1", "port must be from 1 to 65535")
            for name in (
                "CREDLY_API_BASE",
                "PUBLIC_BASE_URL",
                "ISSUER_URL",
                "DIRECTORY_BASE_URL",
                "DIRECTORY_TOKEN_URL",
            )
            for port in ("99999", "abc", "0")
        ),
    ],
)
def test_a_url_or_address_that_cannot_be_used_is_refused_in_one_line(name, value, says):
    """Not a traceback at the first connection, nor a Redis database 0 in place of `8x`; not an
    InvalidURL at each Credly call, nor a server that never serves."""
    with pytest.raises(ConfigError, match=f"^{name}") as refused:
        Settings.from_env({**CREDLY, **DIRECTORY, name: value})
    message = str(refused.value)
    assert says in message and "\n" not in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    "name",
    [
        "CREDLY_ORGANIZATION_ID",
        "CREDLY_AUTH_TOKEN",
        "DIRECTORY_CLIENT_ID",
        "DIRECTORY_CLIENT_SECRET",
    ],
)
@pytest.mark.parametrize("value", ["s3cret ", " s3cret", "s3cret\n", "   "])
def test_an_id_or_secret_blank_or_with_whitespace_around_it_is_refused(name, value):
    """Taken as given, it would be sent so (`/organizations/<id>%20/...`), and every call fail."""
    with pytest.raises(ConfigError, match=f"^{name} must not be blank or begin or end with") as r:
        Settings.from_env({**CREDLY, **DIRECTORY, name: value})
    assert "\n" not in str(r.value)
    if name.endswith(("TOKEN", "SECRET")):
        assert "s3cret" not in str(r.value)
    inside = Settings.from_env({**CREDLY, **DIRECTORY, name: "s3 cret"})
    assert "s3 cret" in (
        inside.credly_organization_id,
        inside.credly_auth_token,
        inside.directory_client_id,
        inside.directory_client_secret,
    )


@pytest.mark.parametrize(
    "value",
    [
        "call the registry",
        "registry at example.org",
        "example.org",
        "+1 555 0100",
        "mailto:",
        "ftp://example.org/contact",
        "https://",
        "javascript:alert(1)",
    ],
)
def test_an_issuer_contact_neither_an_email_address_nor_a_web_address_is_refused(value):
    """Shown to employers as the way to reach the certifying body, and linked on the page."""
    with pytest.raises(ConfigError, match=r"^ISSUER_CONTACT must be") as refused:
        Settings.from_env({"ISSUER_CONTACT": value})
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("value", "read"),
    [
        ("registry@example.org", "registry@example.org"),
        (" mailto:registry@example.org ", "registry@example.org"),
        ("https://example.org/contact?topic=verify", "https://example.org/contact?topic=verify"),
        ("HTTPS://example.org/contact", "https://example.org/contact"),
    ],
)
def test_an_issuer_contact_is_an_email_address_or_a_web_address(value, read):
    assert Settings.from_env({"ISSUER_CONTACT": value}).issuer_contact == read


def test_an_instance_path_that_is_a_file_is_refused(tmp_path):
    a_file = tmp_path / "instance"
    a_file.write_text("x")
    for folder, why in ((a_file, ""), (a_file / "below", f" ({a_file} is not one)")):
        with pytest.raises(ConfigError) as refused:
            Settings.from_env({"INSTANCE_PATH": str(folder)})
        said = f"INSTANCE_PATH: {folder} is not a folder and cannot be made one{why}"
        assert str(refused.value) == said
    with pytest.raises(ConfigError, match=r"^DATABASE_URL: the SQLite file's folder"):
        Settings.from_env({"DATABASE_URL": f"sqlite:///{a_file}/gateway.sqlite3"})
    new = tmp_path / "new" / "folder"  # a folder that can be made is taken
    assert Settings.from_env({"INSTANCE_PATH": str(new)}).instance_path == str(new)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ('{"RMA": null, "RPT": "t"}', "CREDLY_BADGE_TEMPLATES gives RMA no template id, got null"),
        ('{"RPT": "", "RMA": "t-1"}', 'CREDLY_BADGE_TEMPLATES gives RPT no template id, got ""'),
        ('{"RMA": 7}', "CREDLY_BADGE_TEMPLATES gives RMA no template id, got 7"),
        ('{"RMA": "a", "RMA": "b"}', "CREDLY_BADGE_TEMPLATES names RMA twice"),
        ('{" ": "a"}', "CREDLY_BADGE_TEMPLATES names a template for no credential"),
        ("RMA=a,RMA=b", "CREDLY_BADGE_TEMPLATES names RMA twice"),
        ("RMA=a, RPT= ", 'CREDLY_BADGE_TEMPLATES gives RPT no template id, got ""'),
    ],
)
def test_each_credential_has_one_badge_template(value, says):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"CREDLY_BADGE_TEMPLATES": value})
    assert str(refused.value) == says


def test_a_bad_url_is_named_without_its_password():
    with pytest.raises(ConfigError, match="DATABASE_URL") as refused:
        Settings.from_env({"DATABASE_URL": "mysql://gateway:s3cret@db.internal/gateway"})
    assert "s3cret" not in str(refused.value)


def test_the_policy_file_and_the_badge_templates_it_must_hold_are_checked_at_start(tmp_path):
    database = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    with pytest.raises(ConfigError, match=r"POLICY_FILE: .*missing\.toml"):
        Services.build(Settings(database_url=database, policy_file=str(tmp_path / "missing.toml")))
    with pytest.raises(ConfigError, match="CREDLY_BADGE_TEMPLATES names RMAX, not in"):
        Services.build(Settings(database_url=database, credly_badge_templates={"RMAX": "t-1"}))


@pytest.mark.parametrize(
    ("raw", "taken"), [("02:30", "02:30"), ("2:30", "02:30"), ("23:59", "23:59")]
)
def test_a_sweep_time_is_taken_as_hh_mm(raw, taken):
    assert Settings.from_env({"SWEEP_TIME": raw}).sweep_time == taken
