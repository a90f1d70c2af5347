from __future__ import annotations

import pytest

from plumbing.settings import (
    DEV_JWT_SECRET,
    ConfigError,
    load_settings,
    redact_url,
    to_async_url,
    to_sync_url,
)


def test_embedded_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DATABASE_URL", "REDIS_URL", "MONGODB_URL", "TEMPORAL_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings(_env_file=None)
    assert s.async_database_url == "sqlite+aiosqlite:///.waybill/waybill.db"
    assert s.uses_embedded_bus
    assert s.temporal_target == "127.0.0.1:7233"


def test_store_urls_from_plain_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@db:5432/waybill")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal:7233")
    s = load_settings(_env_file=None)
    assert s.async_database_url == "postgresql+psycopg://u:pw@db:5432/waybill"
    assert not s.uses_embedded_bus
    assert s.temporal_target == "temporal:7233"


def test_production_refuses_dev_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAYBILL_ENV", "production")
    with pytest.raises(ConfigError, match="built-in development secret"):
        load_settings(_env_file=None)
    monkeypatch.setenv("WAYBILL_JWT_KEYS", '{"k1": "short"}')
    monkeypatch.setenv("WAYBILL_JWT_ACTIVE_KID", "k1")
    with pytest.raises(ConfigError, match="shorter than 32 bytes"):
        load_settings(_env_file=None)
    monkeypatch.setenv("WAYBILL_JWT_KEYS", '{"k1": "' + "s" * 48 + '"}')
    monkeypatch.setenv("WAYBILL_WS_ALLOWED_ORIGINS", "https://console.example.com")
    assert load_settings(_env_file=None).jwt_keys == {"k1": "s" * 48}


def test_production_requires_socket_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAYBILL_ENV", "production")
    monkeypatch.setenv("WAYBILL_JWT_KEYS", '{"k1": "' + "s" * 48 + '"}')
    monkeypatch.delenv("WAYBILL_WS_ALLOWED_ORIGINS", raising=False)
    with pytest.raises(ConfigError, match="WAYBILL_WS_ALLOWED_ORIGINS is empty.*or set it to \\*"):
        load_settings(_env_file=None)
    monkeypatch.setenv("WAYBILL_WS_ALLOWED_ORIGINS", "")
    with pytest.raises(ConfigError, match="WAYBILL_WS_ALLOWED_ORIGINS is empty"):
        load_settings(_env_file=None)
    monkeypatch.setenv("WAYBILL_WS_ALLOWED_ORIGINS", "https://console.example.com, https://ops.example.com")
    origins = ["https://console.example.com", "https://ops.example.com"]
    assert load_settings(_env_file=None).ws_allowed_origins == origins
    monkeypatch.setenv("WAYBILL_WS_ALLOWED_ORIGINS", "*")  # any origin, said explicitly
    assert load_settings(_env_file=None).ws_allowed_origins == ["*"]
    # Outside production an empty list still means any origin.
    monkeypatch.setenv("WAYBILL_ENV", "development")
    monkeypatch.delenv("WAYBILL_WS_ALLOWED_ORIGINS")
    assert load_settings(_env_file=None).ws_allowed_origins == []


def test_trusted_proxies_are_addresses_or_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAYBILL_TRUSTED_PROXIES", raising=False)
    assert load_settings(_env_file=None).trusted_proxies == []  # none by default
    monkeypatch.setenv("WAYBILL_TRUSTED_PROXIES", "10.0.0.5, 10.1.0.0/16,::1")
    assert load_settings(_env_file=None).trusted_proxies == ["10.0.0.5/32", "10.1.0.0/16", "::1/128"]
    for bad in ("*", "proxy.internal", "10.0.0.0/33"):
        monkeypatch.setenv("WAYBILL_TRUSTED_PROXIES", bad)
        with pytest.raises(ConfigError, match="not an IP address or CIDR network"):
            load_settings(_env_file=None)


def test_dev_secret_allowed_in_development() -> None:
    assert load_settings(_env_file=None, env="development").jwt_keys["dev"] == DEV_JWT_SECRET


def test_active_kid_must_exist() -> None:
    with pytest.raises(ConfigError, match="names no key"):
        load_settings(_env_file=None, jwt_active_kid="missing")


def test_active_kid_defaults_to_the_only_key() -> None:
    keys = {"k9": "s" * 40}
    assert load_settings(_env_file=None, jwt_keys=keys).active_kid == "k9"
    assert load_settings(_env_file=None, jwt_keys=keys, jwt_active_kid="").active_kid == "k9"
    with pytest.raises(ConfigError, match="several keys"):
        load_settings(_env_file=None, jwt_keys={**keys, "k10": "t" * 40})


def test_url_helpers() -> None:
    assert to_sync_url("sqlite:///x.db") == "sqlite:///x.db"
    assert to_async_url("postgres://a@b/c") == "postgresql+psycopg://a@b/c"
    with pytest.raises(ConfigError, match="unsupported database"):
        to_async_url("mysql://a@b/c")
    assert redact_url("postgresql://user:secret@host/db") == "postgresql://user:***@host/db"
    assert redact_url("redis://host:6379") == "redis://host:6379"
