"""The one Settings class. Read in entry points and passed down; nothing reads the environment elsewhere.

Store URLs left unset select the embedded defaults (SQLite file, in-process cache and bus, history in
the SQL database); see DESIGN.md "Stores". Every variable is listed in .env.example.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from domain.egress import EgressPolicy

# Default travel speeds of the great-circle matrix, per vehicle profile (km/h).
ROUTING_SPEEDS_KMH = {"bike": 15.0, "scooter": 25.0, "car": 40.0, "van": 35.0, "truck": 30.0}
DEV_JWT_SECRET = "waybill-dev-secret-change-me-0000000000000000"  # noqa: S105 - refused outside dev
MIN_SECRET_BYTES = 32


class ConfigError(ValueError):
    """Configuration that Waybill refuses to start with; the message says what to change."""


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


def _alias(*names: str) -> Any:
    return AliasChoices(*names)


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WAYBILL_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    env: Environment = Environment.DEVELOPMENT
    data_dir: Path = Path(".waybill")
    log_level: str = "INFO"
    log_format: str = Field(default="auto", pattern="^(auto|json|text)$")

    # Processes
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    sockets_host: str = "127.0.0.1"
    sockets_port: int = Field(default=8001, ge=1, le=65535)
    # `waybill sockets --processes N` (docs/sockets.md "Replicas on one host"): N replicas share the
    # socket port (SO_REUSEPORT) and replica i serves /metrics on sockets_metrics_port + i.
    sockets_processes: int = Field(default=1, ge=1, le=64)
    sockets_metrics_port: int = Field(default=9470, ge=1, le=65535)
    public_base_url: str = "http://localhost:8000"
    # Worker metrics (the API and sockets serve /metrics on their own ports); 0 turns one off.
    metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)
    temporal_metrics_port: int = Field(default=9465, ge=0, le=65535)
    # OpenTelemetry traces over OTLP/HTTP (e.g. http://otel-collector:4318); unset: no tracing.
    otlp_endpoint: str | None = Field(
        default=None, validation_alias=_alias("WAYBILL_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    )

    # Stores: unset selects the embedded default.
    database_url: str | None = Field(
        default=None, validation_alias=_alias("DATABASE_URL", "WAYBILL_DATABASE_URL")
    )
    redis_url: str | None = Field(default=None, validation_alias=_alias("REDIS_URL", "WAYBILL_REDIS_URL"))
    redis_prefix: str = "waybill:"
    mongodb_url: str | None = Field(
        default=None, validation_alias=_alias("MONGODB_URL", "WAYBILL_MONGODB_URL")
    )
    mongodb_database: str = "waybill"
    db_pool_size: int = Field(default=10, ge=1)

    # Temporal
    temporal_address: str | None = Field(
        default=None, validation_alias=_alias("TEMPORAL_ADDRESS", "WAYBILL_TEMPORAL_ADDRESS")
    )
    temporal_namespace: str = Field(
        default="default", validation_alias=_alias("TEMPORAL_NAMESPACE", "WAYBILL_TEMPORAL_NAMESPACE")
    )
    temporal_task_queue: str = "waybill"
    temporal_routing_task_queue: str = "waybill-routing"
    temporal_dev_port: int = Field(default=7233, ge=1, le=65535)
    temporal_ui_port: int = Field(default=8233, ge=1, le=65535)

    # Auth
    jwt_keys: Annotated[dict[str, str], Field(default_factory=lambda: {"dev": DEV_JWT_SECRET})]
    jwt_active_kid: str | None = None  # unset: the only key in jwt_keys
    jwt_algorithm: str = Field(default="HS256", pattern="^HS(256|384|512)$")
    jwt_issuer: str = "waybill"
    jwt_audience: str = "waybill-api"
    access_token_ttl_seconds: int = Field(default=900, ge=30)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)

    # HTTP
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Reverse proxies in front of the API (IP addresses or CIDR networks) whose X-Forwarded-For and
    # X-Forwarded-Proto are believed (docs/security.md "Client addresses"). Empty: none, the TCP peer is
    # the client, whatever headers it sends (uvicorn on its own would believe 127.0.0.1).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    default_page_size: int = Field(default=50, ge=1)
    max_page_size: int = Field(default=200, ge=1)

    # Routing: travel matrices and the solver processes of the routing worker
    routing_osrm_url: str | None = None  # unset: great-circle distances x detour factor
    routing_detour_factor: float = Field(default=1.3, ge=1.0)
    routing_speeds_kmh: Annotated[dict[str, float], Field(default_factory=lambda: dict(ROUTING_SPEEDS_KMH))]
    routing_matrix_cache_ttl_seconds: int = Field(default=86400, ge=1)
    routing_solver_processes: int = Field(default=1, ge=1)

    # Deliveries
    delivery_pod_max_distance_m: float = Field(default=200.0, gt=0)
    delivery_unassigned_alert_minutes: float = Field(default=30.0, gt=0)
    delivery_batch_max: int = Field(default=1000, ge=1, le=10_000)
    # How long an action waits for its Update's outcome before answering 202 action_pending
    # (docs/deliveries.md): bounded so that a dead worker cannot stall callers.
    action_wait_seconds: float = Field(default=5.0, gt=0, le=60)
    proof_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Request bodies: JSON and CSV up to max_body_bytes, multipart uploads up to max_upload_bytes
    # (413 beyond).
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_upload_bytes: int = Field(default=12 * 1024 * 1024, ge=1024)
    # Rate limits per window (sliding; 0 turns one off): per client IP on every request, per user
    # once authenticated, per IP and e-mail on login, per IP on refresh (docs/security.md).
    rate_limit_window_seconds: float = Field(default=60.0, gt=0)
    rate_limit_ip: int = Field(default=1200, ge=0)
    rate_limit_user: int = Field(default=1200, ge=0)
    rate_limit_login: int = Field(default=10, ge=0)
    rate_limit_refresh: int = Field(default=60, ge=0)

    # Notifications (docs/notifications.md): e-mail over SMTP and SMS through an HTTP provider; a
    # channel whose server is unset is off.
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_from: str = "Waybill <no-reply@waybill.invalid>"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    sms_provider_url: str | None = None
    sms_provider_token: str | None = None
    sms_sender: str = "Waybill"
    notification_locale: str = "en"
    notification_retry_period_seconds: float = Field(default=3600.0, gt=0)
    tracking_url_template: str = "http://localhost:8000/track/{delivery_id}"

    # Outbound webhooks (docs/webhooks.md)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_retry_initial_seconds: float = Field(default=5.0, gt=0)
    webhook_retry_max_interval_seconds: float = Field(default=3600.0, gt=0)
    webhook_retry_period_seconds: float = Field(default=86400.0, gt=0)
    webhook_disable_after_seconds: float = Field(default=259200.0, gt=0)
    # Host names, addresses or CIDR networks webhooks may reach although they are loopback, private,
    # link-local or otherwise not public (docs/webhooks.md "Allowed receivers"); empty: none.
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Inbound integrations
    import_max_rows: int = Field(default=10_000, ge=1)

    # Sockets
    ws_auth_timeout_seconds: float = Field(default=5.0, gt=0)
    ws_ping_interval_seconds: float = Field(default=25.0, gt=0)
    ws_ping_timeout_seconds: float = Field(default=30.0, gt=0)
    ws_max_frame_bytes: int = Field(default=64 * 1024, ge=1024)
    ws_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    ws_dispatch_max_pending: int = Field(default=1000, ge=10)
    ws_dispatch_max_lag_seconds: float = Field(default=10.0, gt=0)
    # Socket limits (docs/security.md "Sockets"): frames per second per connection, a token bucket
    # with bursts (0 turns it off); refused frames within 10 s that close a connection as a flood
    # (4420; 0: never); open connections per user, across replicas with Redis (4409; 0: no cap);
    # how long a crashed replica's connections keep counting in Redis.
    ws_driver_frames_per_second: float = Field(default=50.0, ge=0)
    ws_driver_frame_burst: int = Field(default=100, ge=1)
    ws_dispatch_frames_per_second: float = Field(default=20.0, ge=0)
    ws_dispatch_frame_burst: int = Field(default=200, ge=1)
    ws_flood_refused_frames: int = Field(default=200, ge=0)
    ws_driver_max_connections: int = Field(default=3, ge=0)
    ws_staff_max_connections: int = Field(default=5, ge=0)
    ws_connection_lease_seconds: float = Field(default=60.0, ge=3)

    # Live tracking
    tracking_max_accuracy_m: float = Field(default=100.0, gt=0)
    tracking_max_speed_mps: float = Field(default=70.0, gt=0)
    tracking_max_future_seconds: float = Field(default=30.0, ge=0)
    # History is written when `batch` positions are buffered or `flush_ms` after a batch's first one
    # (acks wait for it); the latest positions are cached and published every `publish_ms`. Short
    # intervals keep a dispatcher's view fresh at moderate rates; at high rates batches fill first.
    tracking_history_batch: int = Field(default=1000, ge=1)
    tracking_history_flush_ms: int = Field(default=50, ge=1)
    tracking_publish_ms: int = Field(default=10, ge=1)
    tracking_arrival_radius_m: float = Field(default=50.0, gt=0)
    tracking_arrival_dwell_seconds: float = Field(default=30.0, ge=0)
    tracking_depot_radius_m: float = Field(default=150.0, gt=0)
    tracking_eta_threshold_seconds: float = Field(default=120.0, ge=0)
    tracking_share_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    # Tracking REST API (docs/api.md "Live tracking"): the longest link a dispatcher may ask for, the
    # nearby search's largest radius and result count, a track's longest span and most stored points.
    tracking_share_max_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    tracking_nearby_max_radius_m: float = Field(default=50_000.0, gt=0)
    tracking_nearby_max_limit: int = Field(default=200, ge=1)
    tracking_track_max_span_seconds: int = Field(default=24 * 3600, ge=60)
    tracking_track_max_points: int = Field(default=5_000, ge=2, le=9_999)

    # Fleet analytics (docs/analytics.md)
    temporal_analytics_task_queue: str = "waybill-analytics"
    analytics_schedules: bool = True  # create each organization's Temporal Schedules on worker start
    analytics_report_time: str = Field(default="02:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    analytics_default_timezone: str = "UTC"  # for organizations without a depot

    # Delivery reconciler (docs/operations.md "Reconciling deliveries and workflows"): a Temporal
    # Schedule every interval (0: none); rows and workflows younger than the grace period are left
    # alone (creates in flight); with repair off the scheduled runs only report.
    reconcile_interval_seconds: int = Field(default=300, ge=0)
    reconcile_grace_seconds: float = Field(default=120.0, ge=0)
    reconcile_repair: bool = True

    @field_validator("cors_origins", "ws_allowed_origins", "webhook_allowed_hosts", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _egress_entries(cls, value: list[str]) -> list[str]:
        EgressPolicy.parse(value)  # an unreadable entry is refused at start, not at the first webhook
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_networks(cls, value: Any) -> Any:
        entries = _split_csv(value)
        if not isinstance(entries, list):
            return entries  # pydantic refuses it with its own message
        networks = []
        for entry in entries:
            try:
                networks.append(str(ipaddress.ip_network(str(entry).strip(), strict=False)))
            except ValueError:
                raise ConfigError(
                    f"WAYBILL_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR network "
                    "(e.g. 10.0.0.5 or 10.0.0.0/8); names and '*' are not accepted"
                ) from None
        return networks

    @field_validator("jwt_active_kid", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _refuse_insecure(self) -> Settings:
        if not self.jwt_keys:
            raise ConfigError("WAYBILL_JWT_KEYS is empty: give at least one key")
        if self.jwt_active_kid is None:
            if len(self.jwt_keys) > 1:
                raise ConfigError(
                    "WAYBILL_JWT_KEYS has several keys: set WAYBILL_JWT_ACTIVE_KID to the one that signs"
                )
            self.jwt_active_kid = next(iter(self.jwt_keys))
        if self.jwt_active_kid not in self.jwt_keys:
            raise ConfigError(
                f"WAYBILL_JWT_ACTIVE_KID={self.jwt_active_kid!r} names no key in WAYBILL_JWT_KEYS "
                f"(known: {', '.join(sorted(self.jwt_keys)) or 'none'})"
            )
        if self.default_page_size > self.max_page_size:
            raise ConfigError("WAYBILL_DEFAULT_PAGE_SIZE must not exceed WAYBILL_MAX_PAGE_SIZE")
        if self.env is Environment.PRODUCTION:
            for kid, secret in self.jwt_keys.items():
                if secret == DEV_JWT_SECRET:
                    raise ConfigError(
                        f"JWT key {kid!r} is the built-in development secret; set WAYBILL_JWT_KEYS to "
                        'your own keys (e.g. {"k1": "<32+ random bytes>"}) before running with '
                        "WAYBILL_ENV=production"
                    )
                if len(secret.encode()) < MIN_SECRET_BYTES:
                    raise ConfigError(
                        f"JWT key {kid!r} is shorter than {MIN_SECRET_BYTES} bytes; "
                        "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
                    )
            if not self.ws_allowed_origins:
                raise ConfigError(
                    "WAYBILL_WS_ALLOWED_ORIGINS is empty: with WAYBILL_ENV=production list the browser "
                    "origins that may open sockets, comma-separated (e.g. https://console.example.com), or "
                    "set it to * to accept any origin deliberately"
                )
        return self

    # Derived values -------------------------------------------------------------------------

    @property
    def active_kid(self) -> str:
        assert self.jwt_active_kid is not None  # resolved by the validator
        return self.jwt_active_kid

    @property
    def is_dev(self) -> bool:
        return self.env is not Environment.PRODUCTION

    @property
    def uses_embedded_bus(self) -> bool:
        return self.redis_url is None

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "waybill.db"

    @property
    def async_database_url(self) -> str:
        return to_async_url(self.database_url or f"sqlite:///{self.sqlite_path}")

    @property
    def sync_database_url(self) -> str:
        return to_sync_url(self.database_url or f"sqlite:///{self.sqlite_path}")

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_dev_port}"

    @property
    def database_label(self) -> str:
        return "postgresql" if self.async_database_url.startswith("postgresql") else "sqlite"


def _scheme_split(url: str) -> tuple[str, str]:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"database URL {redact_url(url)!r} has no scheme (postgresql:// or sqlite:///)")
    return scheme.split("+", 1)[0], rest


def _with_driver(url: str, sqlite_scheme: str) -> str:
    base, rest = _scheme_split(url)
    if base in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"  # psycopg 3 serves both sync and async engines
    if base == "sqlite":
        return f"{sqlite_scheme}://{rest}"
    raise ConfigError(f"unsupported database {base!r}: use PostgreSQL (postgresql://) or SQLite (sqlite:///)")


def to_async_url(url: str) -> str:
    """postgresql://… → postgresql+psycopg://…, sqlite:///… → sqlite+aiosqlite:///…"""
    return _with_driver(url, "sqlite+aiosqlite")


def to_sync_url(url: str) -> str:
    """The same database through a synchronous driver (Alembic migrations, the backup tools)."""
    return _with_driver(url, "sqlite")


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe for logs and error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, at, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (and .env), turning validation failures into ConfigError."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            ctx_error = (err.get("ctx") or {}).get("error")
            msg = str(ctx_error) if isinstance(ctx_error, ConfigError) else err["msg"]
            problems.append(f"{loc}: {msg}" if loc != "settings" else msg)
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
