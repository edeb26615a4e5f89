"""The operator's settings for the platform and the agent, in one typed place.

Each setting comes from, highest first: a command-line flag, the environment
(``SUANWANG_<NAME>``, e.g. ``SUANWANG_LEASE_S=20``), a settings file (TOML or
YAML, named by ``--settings``/``SUANWANG_CONFIG``; keys are the field names
below), then the default.  A bad value stops the process at start-up with a
message naming the setting and where it came from (``SettingsError``), never
half-way through a run.  ``LoopSettings``, the control loop's own input, lives
here too, so a default is written once; this module imports nothing heavy,
since the agent reads its settings from it as well.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

PREFIX = "SUANWANG_"
CONFIG_ENV = "SUANWANG_CONFIG"

LogFormat = Literal["auto", "json", "plain"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


@dataclass(frozen=True, slots=True)
class LoopSettings:
    """The control loop's knobs (``Platform``'s input; ``PlatformSettings.loop()`` builds it from the operator's)."""

    lease_s: float = 15.0  # an agent that misses heartbeats this long loses its jobs
    site_timeout_s: float = 30.0  # a site silent this long shows offline
    tick_s: float = 5.0  # control-loop safety tick when nothing wakes it (work wakes it at once); reaps leases
    restart_grace_s: float = 30.0  # after a platform restart, agents get this long to reconnect
    min_tick_s: float = 0.05  # at most this often, so a burst of submits is placed in batches
    lease_poll_s: float = 2.0  # an agent's long-poll looks at the database this often without a wake-up
    loop_share: float = 0.33  # under load, the control loop pauses twice as long as its last pass took
    engine_queue: float = 1.0  # Slurm/Ray pools may hold this multiple of their capacity (their own queue)
    rating_batch: int = 1000  # usage records rated per transaction
    usage_clock_skew_s: float = 120.0  # usage may start this long before its lease and end this long after now
    loop_failures_max: int = 3  # /health fails once this many passes in a row failed
    loop_stale_s: float = 60.0  # ... or once no pass succeeded for this long
    reconcile_s: float = 3600.0  # reconcile the ledger this often for the metric (0: only on demand)
    replica_grace_s: float = 86_400.0  # a staged replica nobody needs is deleted this long after its last use
    market: tuple[tuple[str, int], ...] = ()  # market session schedule overrides (domain.market.session.Schedule)


_LOOP = LoopSettings()


class SettingsError(Exception):
    """A setting is missing, unknown or out of range; the message names it."""


def read_settings_file(path: Path) -> dict[str, Any]:
    """A TOML (``.toml``) or YAML (anything else) file holding one table of settings."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(f"settings file {path}: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise SettingsError(f"settings file {path} does not parse: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path} must hold a table of name = value, not {type(data).__name__}")
    return data


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="forbid", frozen=True, validate_default=True)

    log_format: LogFormat = "auto"  # auto: JSON when stderr is not a terminal, plain text otherwise
    log_level: LogLevel | None = None  # None: INFO (WARNING for `up`, whose terminal is the user's)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=_FILE.get(settings_cls, {}))

    @classmethod
    def load(cls, *, settings_file: Path | None = None, **flags: Any):  # type: ignore[no-untyped-def]
        """Read the settings; ``flags`` are the command line's (``None`` means not given).

        Raises SettingsError naming each bad setting.
        """
        path = settings_file or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
        given = {k: v for k, v in flags.items() if v is not None}
        _FILE[cls] = read_settings_file(path) if path else {}
        try:
            return cls(**given)
        except ValidationError as exc:
            raise SettingsError(_describe(exc, given, path)) from None
        finally:
            _FILE.pop(cls, None)


_FILE: dict[type[BaseSettings], dict[str, Any]] = {}  # the file being read, for the duration of one load()


_FLAGS = {"agent_token": "--token", "site_config": "--config"}  # where a flag is not the field's name  # nosec B105  # flag names, not secrets


def _describe(exc: ValidationError, given: dict[str, Any], path: Path | None) -> str:
    lines = []
    for error in exc.errors():
        name = ".".join(str(p) for p in error["loc"]) or "settings"
        flag, env = _FLAGS.get(name, f"--{name.replace('_', '-')}"), f"{PREFIX}{name.upper()}"
        if error["type"] == "missing":
            lines.append(f"setting {name} is missing: pass {flag} or set {env}")
            continue
        source = flag if name in given else env if env in os.environ else str(path) if path else "default"
        msg = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"setting {name} (from {source}): {msg}")
    return "bad settings: " + "; ".join(lines)


class PlatformSettings(_Base):
    """``suanwang serve``/``up``/``migrate``: where the state lives, where to listen, the control loop."""

    database_url: str | None = None  # SQLAlchemy URL; None: SQLite in the data directory
    data_dir: Path = Field(default_factory=lambda: Path(os.environ.get("SUANWANG_HOME") or Path.home() / ".suanwang"))
    host: str = "127.0.0.1"
    port: int = Field(8600, ge=1, le=65535)
    lease_s: float = Field(_LOOP.lease_s, gt=0, le=86_400, allow_inf_nan=False)
    tick_s: float = Field(_LOOP.tick_s, gt=0, le=3600, allow_inf_nan=False)
    lease_poll_s: float = Field(_LOOP.lease_poll_s, gt=0, le=3600, allow_inf_nan=False)
    site_timeout_s: float | None = Field(None, gt=0, le=86_400, allow_inf_nan=False)  # None: 2 x lease, at least 5 s
    engine_queue: float = Field(_LOOP.engine_queue, ge=1.0, le=100.0, allow_inf_nan=False)
    rating_batch: int = Field(_LOOP.rating_batch, ge=1, le=100_000)
    usage_clock_skew_s: float = Field(_LOOP.usage_clock_skew_s, ge=0, le=86_400, allow_inf_nan=False)
    loop_failures_max: int = Field(_LOOP.loop_failures_max, ge=1, le=1000)  # /health fails after this many
    loop_stale_s: float = Field(_LOOP.loop_stale_s, gt=0, le=86_400, allow_inf_nan=False)  # or no pass this long
    reconcile_s: float = Field(_LOOP.reconcile_s, ge=0, le=30 * 86_400, allow_inf_nan=False)  # 0: never
    replica_grace_s: float = Field(_LOOP.replica_grace_s, ge=0, le=366 * 86_400, allow_inf_nan=False)
    # The market's session schedule (docs/market.md); unset: production's (hourly day-ahead gated 12:00 UTC,
    # quarter-hour intraday).  Shortened for tests and demos, e.g. a 10 s intraday cadence with a 120 s slot.
    market_da_gate_s: int | None = Field(None, ge=0, le=86_400)
    market_da_slot_s: int | None = Field(None, ge=1, le=86_400)
    market_intraday_every_s: int | None = Field(None, ge=1, le=86_400)
    market_intraday_slot_s: int | None = Field(None, ge=1, le=86_400)
    market_intraday_slots: int | None = Field(None, ge=1, le=1000)
    market_intraday_lead_s: int | None = Field(None, ge=0, le=86_400)
    migrate: bool = False  # serve: bring the schema to head (under the migration lock) instead of refusing
    map_geojson: Path | None = None  # the operator's approved map background (web/geo.py); None: no borders

    @field_validator("database_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        if value is not None and "://" not in value:
            raise ValueError("expected a URL such as sqlite:///path/suanwang.db or postgresql://user@host:5432/db")
        return value

    @field_validator("market_da_slot_s")
    @classmethod
    def _divides_a_day(cls, value: int | None) -> int | None:
        if value is not None and 86_400 % value:
            raise ValueError("must divide a day (86400 s)")
        return value

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'suanwang.db'}"

    def loop(self) -> LoopSettings:
        """The control loop's part."""
        return LoopSettings(lease_s=self.lease_s, tick_s=self.tick_s, lease_poll_s=self.lease_poll_s,
                            engine_queue=self.engine_queue,
                            site_timeout_s=self.site_timeout_s or max(2 * self.lease_s, 5.0),
                            rating_batch=self.rating_batch, loop_failures_max=self.loop_failures_max,
                            loop_stale_s=self.loop_stale_s, reconcile_s=self.reconcile_s,
                            replica_grace_s=self.replica_grace_s,
                            usage_clock_skew_s=self.usage_clock_skew_s,
                            market=tuple((name.removeprefix("market_"), value) for name in _MARKET
                                         if (value := getattr(self, name)) is not None))


_MARKET = ("market_da_gate_s", "market_da_slot_s", "market_intraday_every_s", "market_intraday_slot_s",
           "market_intraday_slots", "market_intraday_lead_s")


class AgentSettings(_Base):
    """``suanwang agent``: the platform it talks to, its token and its pace."""

    url: str  # SUANWANG_URL
    agent_token: str = Field(min_length=1, repr=False)  # SUANWANG_AGENT_TOKEN; --token
    workdir: Path = Path("./suanwang-agent")
    site_config: Path | None = None  # the engine and pools (--config); None: the local engine
    heartbeat_s: float = Field(1.0, gt=0, le=3600, allow_inf_nan=False)
    poll_s: float = Field(0.1, gt=0, le=60, allow_inf_nan=False)
    usage_interval_s: float = Field(10.0, gt=0, le=86_400, allow_inf_nan=False)
    max_tasks: int = Field(64, ge=1, le=100_000)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected the platform's http:// or https:// URL")
        return value.rstrip("/")
