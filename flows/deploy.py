"""The monthly deployment, served by a long-running local process (Prefect 3's replacement for
the seed's agent): cron in Seattle time, one run at a time, runs by hand from the UI."""

from __future__ import annotations

from dataclasses import dataclass

from flows.errors import ConfigError

DEPLOYMENT_NAME = "monthly"
DEFAULT_CRON = "0 8 1 * *"  # 8 am on the 1st, in DEFAULT_TIMEZONE, through daylight saving
DEFAULT_TIMEZONE = "America/Los_Angeles"


@dataclass(frozen=True)
class ServeOptions:
    name: str = DEPLOYMENT_NAME
    cron: str = DEFAULT_CRON
    timezone: str = DEFAULT_TIMEZONE
    paused: bool = False


def validate_serve_options(options: ServeOptions) -> ServeOptions:
    """Check the cron and time zone with Prefect's own schedule model."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        CronSchedule(cron=options.cron, timezone=options.timezone)
    except ValidationError as exc:
        reason = exc.errors()[0].get("msg", "invalid")
        raise ConfigError(
            f"schedule {options.cron!r} in {options.timezone!r} is not valid ({reason}): "
            f"use a five-field cron such as {DEFAULT_CRON!r} and an IANA time zone such as "
            f"{DEFAULT_TIMEZONE}."
        ) from None
    return options


def serve(options: ServeOptions) -> None:
    """Create or update the deployment and run its flow runs until stopped (Ctrl-C).

    The schedule is not paused when this process stops (pause_on_shutdown=False): a run that
    comes due while nothing serves waits in Scheduled/Late and starts when serving resumes.
    Runs of the deployment queue one behind the other (concurrency limit 1, ENQUEUE).
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    from flows.flow import parent_process_data

    validate_serve_options(options)
    parent_process_data.serve(
        name=options.name,
        schedule=Cron(options.cron, timezone=options.timezone),
        paused=options.paused,
        pause_on_shutdown=False,
        global_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
        ),
        description="Monthly incremental load of SPD crime data: lake, warehouse, dbt.",
        tags=["seattle-crime"],
    )
