"""One typed settings object, resolved once from environment variables with safe local defaults.

Built on pydantic-settings (it comes with Prefect): every field is read from its `CRIME_...`
variable (`SOCRATA_APP_TOKEN` for the token), then from a `.env` file in the working directory
if there is one, then its default. Every variable is documented in the README's Configuration
section. A bad value is one ConfigError sentence naming the variable, never a pydantic report.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from flows.errors import ConfigError
from flows.months import parse_month

Warehouse = Literal["duckdb", "bigquery", "none"]
WAREHOUSES: tuple[Warehouse, ...] = ("duckdb", "bigquery", "none")
MAX_PAGE_SIZE = 50_000  # the SODA 2.x maximum for $limit
PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "CRIME_"
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$", re.ASCII)

# a mapping given to load_settings(env) replaces the process environment and .env for one call
_GIVEN_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("given_env", default=None)


class _MappingSource(EnvSettingsSource):
    """The environment source, reading a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._given = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._given.items()}


# the least value of each whole-number setting
_MINIMUM = {
    "refresh_months": 0,
    "concurrency": 1,
    "page_size": 1,
    "http_attempts": 1,
    "month_attempts": 1,
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        validate_default=False,
    )

    source_url: str = "https://data.seattle.gov"
    dataset_id: str = "tazs-3rd5"
    lake_url: str = "data/lake"
    warehouse: Warehouse = "duckdb"
    duckdb_path: str = "data/warehouse.duckdb"
    start_month: str = "2008-01"
    refresh_months: int = 0
    concurrency: int = 4
    page_size: int = 50_000
    http_timeout_s: float = Field(60.0, validation_alias="CRIME_HTTP_TIMEOUT")
    http_attempts: int = 6
    http_backoff_s: float = Field(1.0, validation_alias="CRIME_HTTP_BACKOFF")
    month_attempts: int = 3
    lock_wait_s: float = Field(0.0, validation_alias="CRIME_LOCK_WAIT")
    staging_dataset: str = "crime_staging"
    # empty means "the warehouse's own target" (duckdb or bigquery)
    dbt_target: str = ""
    run_dbt: bool = True
    dbt_project_dir: str = str(PROJECT_ROOT / "dbt")
    # google cloud: one place for the names the setup script creates and the flow uses
    gcp_project: str | None = None
    gcp_keyfile: str = "creds/key.json"
    bq_location: str = "US"
    bq_dataset: str = "crime_marts"
    gcp_credentials_block: str = "seattle-crime-gcp"
    gcs_bucket_block: str = "seattle-crime-lake"
    socrata_token_block: str = "socrata-app-token"  # noqa: S105 (a block name, not a secret)
    # never printed: repr=False keeps it out of logs, artifacts and tracebacks
    app_token: str | None = Field(None, repr=False, validation_alias="SOCRATA_APP_TOKEN")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        given = _GIVEN_ENV.get()
        if given is not None:
            return (init_settings, _MappingSource(settings_cls, given))
        return (init_settings, env_settings, dotenv_settings)

    def __setattr__(self, name: str, value: object) -> None:
        # resolved once: nothing may change a setting halfway through a run
        raise AttributeError(f"Settings are frozen: {name} cannot be set")

    @field_validator("warehouse", mode="before")
    @classmethod
    def _warehouse(cls, value: object) -> object:
        kind = str(value).lower()
        if kind not in WAREHOUSES:
            raise ValueError(
                f"CRIME_WAREHOUSE={kind!r} is not supported: use 'duckdb', 'bigquery' or "
                "'none' (the lake only)."
            )
        return kind

    @field_validator("source_url", mode="before")
    @classmethod
    def _source_url(cls, value: object) -> object:
        url = str(value).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError(
                f"CRIME_SOURCE_URL={url!r} is not an http(s) URL: "
                "use the portal's address, for example https://data.seattle.gov."
            )
        return url

    @field_validator("start_month", mode="before")
    @classmethod
    def _start_month(cls, value: object) -> object:
        try:
            return parse_month(str(value), "CRIME_START_MONTH")
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator(
        "refresh_months", "concurrency", "page_size", "http_attempts", "month_attempts",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _whole_number(cls, value: object, info: ValidationInfo) -> object:
        name = env_name(str(info.field_name))
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise ValueError(
                    f"{name}={value!r} is not a whole number: set it to an integer."
                ) from None
        minimum = _MINIMUM[str(info.field_name)]
        if isinstance(value, int) and value < minimum:
            raise ValueError(f"{name}={value} is too small: it must be at least {minimum}.")
        if info.field_name == "page_size" and isinstance(value, int) and value > MAX_PAGE_SIZE:
            raise ValueError(
                f"CRIME_PAGE_SIZE={value} is larger than SODA allows: use at most {MAX_PAGE_SIZE}."
            )
        return value

    @field_validator("http_timeout_s", "http_backoff_s", "lock_wait_s", mode="before")
    @classmethod
    def _seconds(cls, value: object, info: ValidationInfo) -> object:
        name = env_name(str(info.field_name))
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{name}={value!r} is not a number: set it to a number.") from None
        if isinstance(value, float | int) and not math.isfinite(value):
            raise ValueError(f"{name}={value} is not a finite number: set it to a number.")
        if isinstance(value, float | int) and value < 0:
            raise ValueError(f"{name}={value} is negative: set it to zero or more.")
        if info.field_name == "http_timeout_s" and value == 0:
            raise ValueError(
                f"{name}=0 would give every request no time at all: set the seconds a request "
                "may take, for example 60."
            )
        return value

    @field_validator("staging_dataset", "bq_dataset", mode="before")
    @classmethod
    def _identifier(cls, value: object, info: ValidationInfo) -> object:
        # these names reach SQL (schemas, datasets): letters, digits and underscores only
        if not IDENTIFIER_RE.match(str(value)):
            raise ValueError(
                f"{env_name(str(info.field_name))}={value!r} is not a schema or dataset name: "
                "use letters, digits and underscores, starting with a letter or underscore."
            )
        return value

    @field_validator("duckdb_path", mode="before")
    @classmethod
    def _duckdb_file(cls, value: object) -> object:
        if Path(str(value)).expanduser().is_dir():
            raise ValueError(
                f"CRIME_DUCKDB_PATH={value!r} is a folder: name the DuckDB file, for example "
                f"{Path(str(value), 'warehouse.duckdb')}."
            )
        return value

    @field_validator("run_dbt", mode="before")
    @classmethod
    def _boolean(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if value.lower() in {"1", "true", "yes", "on"}:
            return True
        if value.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"CRIME_RUN_DBT={value!r} is not a boolean: use true or false.")

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_default(cls, value: object, info: ValidationInfo) -> object:
        """Strip text; an empty variable means the default, as if it were not set.

        Defined after the field validators: pydantic runs "before" validators last-defined
        first, so every one of them sees the stripped value.
        """
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text == "" and info.field_name is not None:
            return cls.model_fields[info.field_name].default
        return text

    @model_validator(mode="after")
    def _fill_dbt_target(self) -> Settings:
        if not self.dbt_target:
            object.__setattr__(self, "dbt_target", self.warehouse)
        return self

    def duckdb_file(self) -> str:
        return str(Path(self.duckdb_path).expanduser().resolve())

    def with_overrides(self, **changes: object) -> Settings:
        return self.model_copy(update=changes)


def env_name(field: str) -> str:
    """The variable a field is read from: CRIME_<FIELD> unless the field names another."""
    info: FieldInfo = Settings.model_fields[field]
    alias = info.validation_alias
    return alias if isinstance(alias, str) else f"{ENV_PREFIX}{field.upper()}"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment and .env (or only from a given mapping), validated.

    Raises ConfigError with one sentence on the first bad value, including a lake and
    warehouse that cannot go together.
    """
    token = _GIVEN_ENV.set(env)
    try:
        settings = Settings()
    except ValidationError as exc:
        raise ConfigError(_one_sentence(exc)) from None
    finally:
        _GIVEN_ENV.reset(token)
    from flows.warehouse import check_backends  # the warehouses say which lakes they read

    check_backends(settings)
    return settings


def _one_sentence(exc: ValidationError) -> str:
    error = exc.errors()[0]
    cause = error.get("ctx", {}).get("error")
    if error["type"] == "value_error" and cause is not None:
        return str(cause)
    field = str(error["loc"][0]) if error["loc"] else ""
    name = env_name(field) if field in Settings.model_fields else field
    return f"{name}={error.get('input')!r} is not valid ({error['msg']}): check its value."
