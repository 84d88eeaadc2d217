from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from flows.errors import ConfigError
from flows.lake.manifest import ManifestEntry
from flows.months import (
    UNKNOWN_MONTH,
    add_months,
    last_complete_month,
    month_range,
    month_window,
    parse_month,
)
from flows.plan import LakeMonth, RunParams, plan_months, validate_params
from flows.sources.socrata import SourceMonth


@pytest.mark.parametrize(
    "bad", ["2024-13", "24-05", "2024-5", "2024-00", "May 2024", "", "2024/05"]
)
def test_malformed_months_are_rejected_with_a_clear_sentence(bad):
    with pytest.raises(ConfigError, match="is not a valid month: use YYYY-MM"):
        parse_month(bad)


def test_month_arithmetic_crosses_years():
    assert add_months("2023-11", 2) == "2024-01"
    assert add_months("2024-01", -1) == "2023-12"
    assert month_range("2023-11", "2024-02") == ["2023-11", "2023-12", "2024-01", "2024-02"]
    assert month_range("2024-02", "2024-01") == []


def test_window_is_half_open_and_zero_padded():
    assert month_window("2023-04") == ("2023-04-01T00:00:00.000", "2023-05-01T00:00:00.000")
    assert month_window("2023-12") == ("2023-12-01T00:00:00.000", "2024-01-01T00:00:00.000")


def test_last_complete_month_uses_seattle_time():
    # 2024-06-01 03:00 UTC is still May 31 in Seattle, so April is the last complete month
    utc_early = datetime(2024, 6, 1, 3, 0, tzinfo=ZoneInfo("UTC"))
    assert last_complete_month(utc_early) == "2024-04"
    assert last_complete_month(datetime(2024, 6, 1, 12, 0, tzinfo=ZoneInfo("UTC"))) == "2024-05"
    assert last_complete_month(datetime(2024, 1, 15, tzinfo=ZoneInfo("UTC"))) == "2023-12"


def test_start_after_end_is_rejected():
    with pytest.raises(ConfigError, match="start_month 2024-05 is after end_month 2024-04"):
        validate_params("2024-05", "2024-04", 0, None)


def test_bad_force_month_is_rejected():
    with pytest.raises(ConfigError, match="force month '2024-13'"):
        validate_params("2024-01", "2024-04", 0, ["2024-13"])


def entry(month: str, rows: int, updated: str = "2024-05-02T10:11:12.345Z") -> LakeMonth:
    return LakeMonth(rows, ManifestEntry(month, rows, "2024-07-01T00:00:00+00:00", updated, ()))


def test_plan_fetches_only_what_differs_from_the_source_and_says_why():
    params = RunParams("2024-01", "2024-06", 0, ("2023-07",))
    lake = {
        "2023-07": entry("2023-07", 5),
        "2024-01": entry("2024-01", 10),
        "2024-02": entry("2024-02", 10),
        "2024-03": entry("2024-03", 10),
        "2024-05": LakeMonth(7, None),
        "2024-06": entry("2024-06", 4),
    }
    source = {
        "2023-07": SourceMonth(5, "2024-05-02T10:11:12.345Z"),
        "2024-01": SourceMonth(10, "2024-05-02T10:11:12Z"),  # same instant, other spelling
        "2024-02": SourceMonth(9, "2024-05-02T10:11:12.345Z"),
        "2024-03": SourceMonth(10, "2024-06-30T00:00:00.000Z"),
        "2024-04": SourceMonth(8, "2024-05-02T10:11:12.345Z"),
        "2024-05": SourceMonth(7, "2024-05-02T10:11:12.345Z"),
        "2024-06": SourceMonth(4, "2024-05-02T10:11:12.345Z"),
        UNKNOWN_MONTH: SourceMonth(2, "2024-05-02T10:11:12.345Z"),
    }
    assert plan_months(params, lake, source) == {
        "2023-07": "forced",
        "2024-02": "count changed (10 -> 9)",
        "2024-03": "rows updated",
        "2024-04": "missing",
        "2024-05": "no manifest",
        UNKNOWN_MONTH: "missing",
    }


def test_a_month_the_source_emptied_is_refetched_and_an_empty_missing_one_is_not():
    params = RunParams("2024-01", "2024-02", 0, ())
    lake = {"2024-01": entry("2024-01", 3)}
    assert plan_months(params, lake, {}) == {"2024-01": "count changed (3 -> 0)"}


def test_refresh_window_and_full_refresh():
    lake = {m: entry(m, 1) for m in ("2024-01", "2024-02", "2024-03")}
    source = {m: SourceMonth(1, "2024-05-02T10:11:12.345Z") for m in lake}
    assert plan_months(RunParams("2024-01", "2024-03", 2, ()), lake, source) == {
        "2024-02": "refresh window",
        "2024-03": "refresh window",
    }
    full = plan_months(RunParams("2024-01", "2024-03", 0, (), full_refresh=True), lake, source)
    assert full == dict.fromkeys(("2024-01", "2024-02", "2024-03"), "full refresh")


def test_nothing_changed_means_nothing_to_fetch():
    lake = {m: entry(m, 4) for m in ("2024-01", "2024-02", UNKNOWN_MONTH)}
    source = {m: SourceMonth(4, "2024-05-02T10:11:12.345Z") for m in lake}
    assert plan_months(RunParams("2024-01", "2024-02", 0, ()), lake, source) == {}
