from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from flows.errors import ConfigError
from flows.months import (
    UNKNOWN_MONTH,
    add_months,
    last_complete_month,
    month_range,
    month_window,
    parse_month,
)
from flows.plan import RunParams, plan_months, validate_params


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


def test_plan_loads_missing_refresh_and_forced_months():
    params = RunParams("2024-01", "2024-06", 2, ("2023-07",))
    present = {"2024-01", "2024-02", "2024-03", "2024-05", "2024-06"}
    plan = plan_months(params, present)
    assert plan == {
        "2023-07": "forced",
        "2024-04": "missing",
        "2024-05": "refresh",
        "2024-06": "refresh",
        UNKNOWN_MONTH: "null report time",
    }


def test_plan_with_everything_present_and_no_refresh_only_checks_the_null_partition():
    params = RunParams("2024-01", "2024-03", 0, ())
    assert plan_months(params, {"2024-01", "2024-02", "2024-03"}) == {
        UNKNOWN_MONTH: "null report time"
    }
