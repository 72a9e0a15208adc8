"""Settings: TASKRT_* variables, platform fallbacks, the TOML file, precedence and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskrt.cli import cli
from taskrt.exceptions import ConfigurationError
from taskrt.runtime import Runtime
from taskrt.settings import DEFAULT_DATABASE_URL, Settings, load_settings, mask_url
from taskrt_plugins.auth_jwt import JwtSettings

# The autouse fixture in tests/conftest.py removes every TASKRT_*, DATABASE_URL and REDIS_URL
# variable first, so each test starts from the defaults.


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "taskrt.toml"
    path.write_text(text)
    return path


# --- defaults -------------------------------------------------------------------------------


def test_defaults_need_no_server() -> None:
    settings = load_settings()

    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.database_url.startswith("sqlite:///")
    assert settings.is_sqlite
    assert not settings.is_postgresql
    assert settings.redis_url is None
    assert settings.plugins_load is None  # no allow-list: every plugin loads
    assert settings.plugins_disable == []
    assert settings.plugins_modules == []
    assert settings.plugins_trace is False


def test_loading_settings_creates_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    load_settings()

    assert list(tmp_path.iterdir()) == []


# --- environment ----------------------------------------------------------------------------


def test_taskrt_variables_set_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKRT_WORKER_CONCURRENCY", "3")
    monkeypatch.setenv("TASKRT_LEASE_TTL", "12.5")
    monkeypatch.setenv("TASKRT_PLUGINS_TRACE", "true")
    monkeypatch.setenv("TASKRT_LOG_FORMAT", "json")

    settings = load_settings()

    assert settings.worker_concurrency == 3
    assert settings.lease_ttl == 12.5
    assert settings.plugins_trace is True
    assert settings.log_format == "json"


def test_database_url_falls_back_to_DATABASE_URL(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://app@db.internal/app")

    assert load_settings().database_url == "postgresql+psycopg://app@db.internal/app"


def test_redis_url_falls_back_to_REDIS_URL(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/2")

    assert load_settings().redis_url == "redis://cache.internal:6379/2"


def test_taskrt_database_url_wins_over_DATABASE_URL(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://platform@a/platform")
    monkeypatch.setenv("TASKRT_DATABASE_URL", "postgresql+psycopg://mine@b/mine")

    assert load_settings().database_url == "postgresql+psycopg://mine@b/mine"


def test_taskrt_redis_url_wins_over_REDIS_URL(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://platform:6379/0")
    monkeypatch.setenv("TASKRT_REDIS_URL", "redis://mine:6379/5")

    assert load_settings().redis_url == "redis://mine:6379/5"


def test_blank_redis_url_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKRT_REDIS_URL", "")

    assert load_settings().redis_url is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////var/lib/taskrt.db", "sqlite:////var/lib/taskrt.db"),
    ],
)
def test_postgres_urls_are_mapped_to_psycopg3(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", given)  # as Heroku-style platforms hand it out

    settings = load_settings()

    assert settings.database_url == expected
    assert settings.is_postgresql == expected.startswith("postgresql")


def test_comma_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKRT_PLUGINS_LOAD", "acme, beta-tools,,example ")
    monkeypatch.setenv("TASKRT_PLUGINS_DISABLE", "broken")
    monkeypatch.setenv("TASKRT_PLUGINS_MODULES", "app.tasks,app.more_tasks")

    settings = load_settings()

    assert settings.plugins_load == ["acme", "beta-tools", "example"]
    assert settings.plugins_disable == ["broken"]
    assert settings.plugins_modules == ["app.tasks", "app.more_tasks"]


def test_comma_lists_from_keyword_arguments() -> None:
    assert load_settings(plugins_disable="a,b").plugins_disable == ["a", "b"]
    assert load_settings(plugins_disable=["a", "b"]).plugins_disable == ["a", "b"]


# --- TOML file ------------------------------------------------------------------------------

TOML = """
database_url = "postgres://toml@toml-host/toml"
redis_url = "redis://toml-host:6379/1"
worker_concurrency = 4
plugins_disable = ["one", "two"]
log_level = "DEBUG"
"""


def test_toml_file_by_path(tmp_path: Path) -> None:
    settings = load_settings(_toml(tmp_path, TOML))

    assert settings.database_url == "postgresql+psycopg://toml@toml-host/toml"
    assert settings.redis_url == "redis://toml-host:6379/1"
    assert settings.worker_concurrency == 4
    assert settings.plugins_disable == ["one", "two"]
    assert settings.log_level == "DEBUG"


def test_toml_file_from_TASKRT_CONFIG(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKRT_CONFIG", str(_toml(tmp_path, TOML)))

    settings = load_settings()

    assert settings.worker_concurrency == 4
    assert settings.redis_url == "redis://toml-host:6379/1"


def test_toml_file_is_not_used_after_the_load_that_named_it(tmp_path: Path) -> None:
    load_settings(_toml(tmp_path, TOML))

    assert load_settings().worker_concurrency == Settings.model_fields["worker_concurrency"].default


def test_missing_config_file_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    with pytest.raises(ConfigurationError, match=r"nope\.toml"):
        load_settings(missing)


def test_malformed_toml_is_a_configuration_error_naming_the_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, "worker_concurrency = \n")

    with pytest.raises(ConfigurationError, match=r"taskrt\.toml"):
        load_settings(path)


def test_unknown_toml_key_is_refused_by_name(tmp_path: Path) -> None:
    """A typo in the file must not be ignored silently."""
    path = _toml(tmp_path, "worker_concurency = 4\n")

    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(path)

    assert "worker_concurency" in str(excinfo.value)
    assert "taskrt.toml" in str(excinfo.value)


# --- precedence -----------------------------------------------------------------------------


def test_precedence_kwargs_then_env_then_toml_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _toml(tmp_path, "worker_concurrency = 4\nfetch_batch = 40\nlease_ttl = 44.0\n")
    monkeypatch.setenv("TASKRT_WORKER_CONCURRENCY", "5")
    monkeypatch.setenv("TASKRT_FETCH_BATCH", "50")

    settings = load_settings(path, worker_concurrency=6)

    assert settings.worker_concurrency == 6  # keyword beats env and file
    assert settings.fetch_batch == 50  # env beats file
    assert settings.lease_ttl == 44.0  # file beats default
    assert settings.poison_budget == Settings.model_fields["poison_budget"].default


def test_env_database_url_beats_the_toml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKRT_DATABASE_URL", "postgresql+psycopg://env@env-host/env")

    settings = load_settings(_toml(tmp_path, TOML))

    assert settings.database_url == "postgresql+psycopg://env@env-host/env"
    assert settings.worker_concurrency == 4  # the rest of the file still applies


# --- bad values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("TASKRT_WORKER_CONCURRENCY", "0", "worker_concurrency"),
        ("TASKRT_WORKER_CONCURRENCY", "many", "worker_concurrency"),
        ("TASKRT_LEASE_TTL", "0.1", "lease_ttl"),
        ("TASKRT_LOG_LEVEL", "LOUD", "log_level"),
        ("TASKRT_REDIS_PREFIX", "has space", "redis_prefix"),
        ("TASKRT_DEFAULT_QUEUE", "bad queue!", "default_queue"),
        ("TASKRT_PLUGINS_TRACE", "perhaps", "plugins_trace"),
    ],
)
def test_bad_environment_value_is_a_configuration_error_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigurationError) as excinfo:
        load_settings()

    assert field in str(excinfo.value)


def test_bad_toml_value_names_the_field_and_the_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'heartbeat_interval = "often"\n')

    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(path)

    message = str(excinfo.value)
    assert "heartbeat_interval" in message
    assert str(path) in message


def test_bad_keyword_value_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="poison_budget"):
        load_settings(poison_budget=0)


def test_configuration_error_is_a_taskrt_error() -> None:
    from taskrt.exceptions import TaskrtError

    with pytest.raises(TaskrtError):
        load_settings(fetch_batch=-1)


# --- masking --------------------------------------------------------------------------------


def test_masked_hides_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKRT_DATABASE_URL", "postgresql://taskrt:hunter2@db.example:5432/taskrt")
    monkeypatch.setenv("TASKRT_REDIS_URL", "redis://:s3cr3t@cache.example:6379/0")

    masked = load_settings().masked()

    assert masked["database_url"] == "postgresql+psycopg://taskrt:***@db.example:5432/taskrt"
    assert masked["redis_url"] == "redis://:***@cache.example:6379/0"
    assert "hunter2" not in repr(masked)
    assert "s3cr3t" not in repr(masked)


def test_masked_is_plain_data_with_every_field() -> None:
    masked = load_settings().masked()

    assert set(masked) == set(Settings.model_fields)
    assert masked["database_url"] == DEFAULT_DATABASE_URL


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (None, None),
        ("sqlite:///taskrt.db", "sqlite:///taskrt.db"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:***@h/db"),
        ("rediss://user:p%40ss@h:6380/0", "rediss://user:***@h:6380/0"),
        ("postgresql://u:secret@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
    ],
)
def test_mask_url(url: str | None, expected: str | None) -> None:
    assert mask_url(url) == expected


@pytest.mark.parametrize(
    ("given", "used"), [("acme", "acme:"), ("acme:", "acme:"), ("", ""), ("a.b-c", "a.b-c:")]
)
def test_a_redis_prefix_gets_its_separator(
    monkeypatch: pytest.MonkeyPatch, given: str, used: str
) -> None:
    monkeypatch.setenv("TASKRT_REDIS_PREFIX", given)
    assert load_settings().redis_prefix == used


def test_an_unsupported_database_url_names_the_setting_and_the_forms_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKRT_DATABASE_URL", "mysql://root@localhost/taskrt")
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    assert "TASKRT_DATABASE_URL" in message
    assert "unsupported database 'mysql'" in message
    assert "postgresql://" in message
    assert "sqlite:///" in message


# --- settings sections of plugins -----------------------------------------------------------


def _jwt(settings: Settings) -> JwtSettings:
    return settings.section("jwt", JwtSettings)


def test_a_plugin_section_reads_keywords_env_and_file_with_core_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _toml(tmp_path, 'jwt_issuer = "file"\njwt_audience = "file"\njwt_role_claim = "f"\n')
    monkeypatch.setenv("TASKRT_JWT_AUDIENCE", "env")
    monkeypatch.setenv("TASKRT_JWT_ROLE_CLAIM", "env")

    jwt = _jwt(load_settings(path, jwt_role_claim="keyword"))

    assert jwt.issuer == "file"  # file beats default
    assert jwt.audience == "env"  # env beats file
    assert jwt.role_claim == "keyword"  # keyword beats env and file
    assert jwt.max_lifetime is None


def test_plugin_keys_do_not_change_the_core_settings(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'jwt_issuer = "file"\n')

    assert load_settings(path, jwt_role_claim="sub").model_dump() == Settings().model_dump()
    assert set(load_settings(path).masked()) == set(Settings.model_fields)


def test_a_bad_plugin_value_names_the_variable_when_the_plugins_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKRT_JWT_MAX_LIFETIME", "0")
    settings = load_settings()  # the core cannot check a plugin's settings before it loads

    with pytest.raises(ConfigurationError) as excinfo:
        Runtime.load(settings)

    assert "jwt_max_lifetime (TASKRT_JWT_MAX_LIFETIME)" in str(excinfo.value)


def test_a_typo_in_a_plugin_key_of_the_file_is_refused_by_name(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'jwt_secert = "x"\n')
    settings = load_settings(path)

    with pytest.raises(ConfigurationError) as excinfo:
        Runtime.load(settings)

    assert "jwt_secert" in str(excinfo.value)
    assert "taskrt.toml" in str(excinfo.value)


def test_a_key_no_loaded_plugin_takes_is_refused_by_name(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'acme_colour = "blue"\n')
    settings = load_settings(path, plugins_load=["retry_strategies"])

    with pytest.raises(ConfigurationError) as excinfo:
        Runtime.load(settings)

    assert "acme_colour" in str(excinfo.value)
    assert "taskrt.toml" in str(excinfo.value)


def test_plugin_sections_are_listed_with_secrets_masked() -> None:
    settings = load_settings(jwt_secret="s" * 40, jwt_max_lifetime=60)
    Runtime.load(settings)

    masked = settings.masked_sections()

    assert masked["jwt_secret"] == "***"
    assert masked["jwt_max_lifetime"] == 60
    assert masked["jwt_role_claim"] == "role"
    assert "s" * 40 not in repr(masked)


def test_config_show_lists_plugin_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKRT_DATABASE_URL", "sqlite:///:memory:")
    monkeypatch.setenv("TASKRT_JWT_SECRET", "hunter2-hunter2-hunter2-hunter2-hunter2")
    monkeypatch.setenv("TASKRT_JWT_ISSUER", "https://issuer.example")

    result = CliRunner().invoke(cli, ["config", "show", "--json"])

    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)["settings"]
    assert shown["jwt_secret"] == "***"
    assert shown["jwt_issuer"] == "https://issuer.example"
    assert shown["worker_concurrency"] == Settings.model_fields["worker_concurrency"].default
    assert "hunter2" not in result.output
