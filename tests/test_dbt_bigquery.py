"""dbt on the bigquery target, against bqemulator: every model and test from a full refresh, and
the incremental run as far as the emulator goes.

The emulator runs views, tables, dbt's unit tests and data tests with dbt-bigquery, so the full
refresh is built and tested for real, through the committed profiles.yml (oauth-secrets with a
fake token, BIGQUERY_EMULATOR_HOST). It cannot run dbt's insert_overwrite script (its
translator fails on `array_agg(distinct ... IGNORE NULLS)` and on `in unnest(<script variable>)`,
and it drops partition metadata), so the incremental run is checked in parts: the compiled
incremental select runs on the emulator and must select exactly the months to rewrite, whose
replacement must give the full rebuild's table; the pre-hook runs for real; and every SQL text
dbt produced, the insert_overwrite script included, must be BigQuery's (sqlglot's BigQuery
dialect plus checks that catch DuckDB-only constructs, tests/bq_emulator.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.cloud import bigquery

from flows.lake.local import LocalLake
from flows.lake.manifest import ManifestEntry, parse_entries
from flows.settings import PROJECT_ROOT, Settings
from flows.sources.specs import SPD_CRIME
from flows.warehouse.bigquery import BigQueryWarehouse, rebuild_bigquery_staging
from tests.bq_emulator import (
    PROJECT,
    BqEmulator,
    StandInClient,
    create_dataset,
    running_bq_emulator,
    sql_problems,
    write_lake,
)
from tests.socrata.data import generate_rows

DBT_DIR = PROJECT_ROOT / "dbt"
LOCATION = "europe-west1"
STAGING = "crime_staging"
MARTS = "crime_marts"
LAKE_URL = "gs://crime-lake-test/lake"
LAKE_ROOT = f"{LAKE_URL}/spd_crime"
FIRST_FETCH = "2024-05-01T08:00:00+00:00"
SECOND_FETCH = "2024-06-01T08:00:00+00:00"
# the emulator's failure on dbt's dynamic partition list; a version that runs the script
# should turn the incremental test into a check of the table it leaves
EMULATOR_LIMIT = "FILTER(WHERE NOT"


@dataclass
class Dbt:
    """dbt against one warehouse, with its own target and log folders (never dbt/target)."""

    env: dict[str, str]
    target_path: Path

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [
            str(Path(sys.executable).parent / "dbt"),
            *args,
            "--project-dir",
            str(DBT_DIR),
            "--profiles-dir",
            str(DBT_DIR),
            "--target-path",
            str(self.target_path),
            "--log-path",
            str(self.target_path / "logs"),
        ]
        done = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=300, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"dbt {' '.join(args)} failed:\n{done.stdout[-6000:]}")
        return done

    def compiled(self, *parts: str) -> dict[str, str]:
        """SQL files dbt wrote under target/compiled (or target/run), by path in the project."""
        base = self.target_path.joinpath(*parts, "seattle_crime")
        return {str(p.relative_to(base)): p.read_text() for p in sorted(base.rglob("*.sql"))}

    def results(self) -> dict[str, str]:
        data = json.loads((self.target_path / "run_results.json").read_text())
        return {r["unique_id"]: r["status"] for r in data["results"]}

    def manifest(self) -> dict:
        return json.loads((self.target_path / "manifest.json").read_text())


def dbt_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRIME_", "DBT_"))}
    env.update(
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        NO_PROXY="127.0.0.1,localhost",
        CRIME_STAGING_DATASET=STAGING,
        **variables,
    )
    return env


def rows_at_first_fetch() -> list[dict[str, str | None]]:
    return generate_rows(["2024-01", "2024-02", "2024-03"], 30, seed=21, null_report_rows=3)


def rows_at_second_fetch(first: list[dict[str, str | None]]) -> list[dict[str, str | None]]:
    """2024-03 fetched again and 2024-04 for the first time. SPD revised two offenses meanwhile:
    one reported in February now has a March report time, one that had none (the 'unknown'
    month) an April one. Their old copies stay in the months not fetched again."""
    moved_to_march = next(r for r in first if (r["report_date_time"] or "")[:7] == "2024-02")
    moved_to_april = next(r for r in first if r["report_date_time"] is None)
    revised = "2024-06-01T07:00:00.000Z"
    march = [r for r in first if (r["report_date_time"] or "")[:7] == "2024-03"]
    march.append(
        {**moved_to_march, "report_date_time": "2024-03-30T23:00:00.000", ":updated_at": revised}
    )
    april = [
        {**r, "offense_id": f"9{r['offense_id']}"}  # ids no earlier month has
        for r in generate_rows(["2024-04"], 30, seed=22)
    ]
    april.append(
        {**moved_to_april, "report_date_time": "2024-04-02T01:00:00.000", ":updated_at": revised}
    )
    return march + april


def lake_manifest(lake: LocalLake) -> list[ManifestEntry]:
    """The manifest as the flow reads it before staging."""
    return sorted(parse_entries(lake.manifest_texts()).values(), key=lambda e: e.month)


def settings() -> Settings:
    return Settings(
        warehouse="bigquery",
        gcp_project=PROJECT,
        bq_location=LOCATION,
        staging_dataset=STAGING,
        lake_url=LAKE_URL,
    )


def keys(client: bigquery.Client, relation: str) -> list[tuple[str, str]]:
    rows = client.query(f"select offense_id, report_month from `{relation}`").result()
    return sorted((row[0], row[1]) for row in rows)


@dataclass
class Warehouse:
    emulator: BqEmulator
    client: StandInClient
    lake: LocalLake
    dbt: Dbt


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    work = tmp_path_factory.mktemp("dbt-bigquery")
    with running_bq_emulator(work) as emulator:
        lake, _ = write_lake(work / "lake", rows_at_first_fetch(), fetched_at=FIRST_FETCH)
        client = emulator.stand_in_client({LAKE_ROOT: Path(lake.root)}, location=LOCATION)
        # what terraform creates: both datasets, in the configured location
        create_dataset(client, STAGING, LOCATION)
        create_dataset(client, MARTS, LOCATION)
        env = dbt_env(
            CRIME_DBT_TARGET="bigquery",
            CRIME_BQ_AUTH_METHOD="oauth-secrets",
            CRIME_BQ_TOKEN="fake-token-for-the-emulator",
            BIGQUERY_EMULATOR_HOST=emulator.endpoint,
            CRIME_GCP_PROJECT=PROJECT,
            CRIME_BQ_DATASET=MARTS,
            CRIME_BQ_LOCATION=LOCATION,
        )
        yield Warehouse(emulator, client, lake, Dbt(env, work / "target"))


@dataclass
class FullBuild:
    results: dict[str, str]
    manifest: dict
    compiled: dict[str, str]
    run: dict[str, str]
    staged_rows: int
    fct_keys: list[tuple[str, str]]
    seconds: float


@pytest.fixture(scope="module")
def full_build(warehouse: Warehouse) -> FullBuild:
    staged = rebuild_bigquery_staging(
        warehouse.client, settings(), SPD_CRIME, LAKE_ROOT, lake_manifest(warehouse.lake)
    )
    started = time.monotonic()
    warehouse.dbt("build", "--full-refresh")
    seconds = time.monotonic() - started
    return FullBuild(
        results=warehouse.dbt.results(),
        manifest=warehouse.dbt.manifest(),
        compiled=warehouse.dbt.compiled("compiled"),
        run=warehouse.dbt.compiled("run"),
        staged_rows=staged,
        fct_keys=keys(warehouse.client, f"{PROJECT}.{MARTS}.fct_crimes"),
        seconds=seconds,
    )


@pytest.mark.slow
def test_full_refresh_builds_every_model_and_passes_every_test(full_build: FullBuild) -> None:
    manifest = full_build.manifest
    expected = {
        uid
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] in ("model", "test") and node["package_name"] == "seattle_crime"
    } | set(manifest["unit_tests"])
    assert set(full_build.results) == expected
    failed = {uid: s for uid, s in full_build.results.items() if s not in ("success", "pass")}
    assert failed == {}
    kinds = Counter(uid.split(".")[0] for uid in full_build.results)
    print(f"dbt build on bqemulator: {dict(kinds)} in {full_build.seconds:.0f}s")
    models = {uid.split(".")[-1] for uid in expected if uid.startswith("model.")}
    assert {"stg_spd__offenses", "fct_crimes", "rpt_crime_trend_monthly"} <= models
    # one row per offense of the lake
    assert len(full_build.fct_keys) == full_build.staged_rows == 3 * 30 + 3
    assert len(set(full_build.fct_keys)) == len(full_build.fct_keys)


@pytest.mark.slow
def test_fct_crimes_is_created_partitioned_by_month_and_clustered(
    full_build: FullBuild,
) -> None:
    # the emulator drops partition metadata: the statement dbt sent is the evidence
    ddl = " ".join(full_build.run["models/marts/fct_crimes.sql"].split())
    assert f"create or replace table `{PROJECT}`.`{MARTS}`.`fct_crimes`" in ddl
    assert "partition by date_trunc(report_month_start, month)" in ddl
    assert "cluster by precinct, crime_class, offense_group" in ddl
    # duckdb's try_cast never reaches bigquery: the dispatched macro's safe.parse_date does
    assert "safe.parse_date('%Y-%m', report_month) as report_month_start" in ddl


@pytest.mark.slow
def test_every_compiled_model_and_test_is_bigquery_sql(full_build: FullBuild) -> None:
    texts = {f"compiled/{k}": v for k, v in full_build.compiled.items()}
    texts |= {f"run/{k}": v for k, v in full_build.run.items()}
    models = [k for k in texts if k.startswith("compiled/models/") and "/_" not in k]
    assert len(models) == sum(1 for uid in full_build.results if uid.startswith("model."))
    assert sql_problems(texts) == {}


@pytest.fixture(scope="module")
def duckdb_compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    work = tmp_path_factory.mktemp("dbt-duckdb")
    dbt = Dbt(
        dbt_env(CRIME_DBT_TARGET="duckdb", CRIME_DUCKDB_PATH=str(work / "w.duckdb")),
        work / "target",
    )
    dbt("compile", "--select", "resource_type:model")
    return dbt.compiled("compiled")


@pytest.mark.slow
def test_the_check_fails_the_duckdb_compilation_of_the_same_models(
    duckdb_compiled: dict[str, str],
) -> None:
    problems = sql_problems(duckdb_compiled)
    # the default__ macros are DuckDB's: try_cast, date_trunc('month', x), extract(dow ...)
    assert (
        "try_cast() is not a BigQuery function the suite knows"
        in problems["models/marts/fct_crimes.sql"]
    )
    assert (
        "extract(dow from ...) is not a BigQuery date part"
        in problems["models/marts/rpt_crime_hour_of_week.sql"]
    )


@pytest.mark.parametrize(
    "sql",
    [
        "select x::date from t",
        "select * exclude (a) from t",
        "select a from t where a ilike 'x%'",
        "select strftime(ts, '%Y') from t",
        "select cast(date_trunc('month', ts) as date) from t",
        'select "a" from t',
        "select 1 union select 2",
    ],
)
def test_the_check_names_duckdb_constructs(sql: str) -> None:
    assert sql_problems({"model.sql": sql}) != {}


@dataclass
class IncrementalRun:
    before: list[tuple[str, str]]
    staged: list[tuple[str, str]]
    selected: list[tuple[str, str]]
    compiled: str
    run: subprocess.CompletedProcess[str]
    script: str
    after: list[tuple[str, str]]


@pytest.fixture(scope="module")
def incremental(warehouse: Warehouse, full_build: FullBuild) -> IncrementalRun:
    """The next monthly run: two months fetched, staging rebuilt, then fct_crimes."""
    write_lake(
        Path(warehouse.lake.root).parent,
        rows_at_second_fetch(rows_at_first_fetch()),
        fetched_at=SECOND_FETCH,
    )
    rebuild_bigquery_staging(
        warehouse.client, settings(), SPD_CRIME, LAKE_ROOT, lake_manifest(warehouse.lake)
    )
    fct = f"{PROJECT}.{MARTS}.fct_crimes"
    before = keys(warehouse.client, fct)
    # fct_crimes exists now, so dbt compiles its incremental select
    warehouse.dbt("compile", "--select", "fct_crimes")
    compiled = warehouse.dbt.compiled("compiled")["models/marts/fct_crimes.sql"]
    selected = warehouse.client.query(compiled).result()
    run = warehouse.dbt("run", "--select", "fct_crimes", check=False)
    return IncrementalRun(
        before=before,
        staged=keys(warehouse.client, f"{PROJECT}.{MARTS}.stg_spd__offenses"),
        selected=sorted((row["offense_id"], row["report_month"]) for row in selected),
        compiled=compiled,
        run=run,
        script=warehouse.dbt.compiled("run")["models/marts/fct_crimes.sql"],
        after=keys(warehouse.client, fct),
    )


@pytest.mark.slow
def test_an_incremental_run_selects_only_the_months_to_rewrite(
    incremental: IncrementalRun,
) -> None:
    assert "months_to_rebuild" in incremental.compiled
    months = {month for _, month in incremental.selected}
    # 2024-03 fetched again, 2024-04 new, 2024-02 and unknown each lose an offense to them;
    # 2024-01 is left alone
    assert months == {"2024-02", "2024-03", "2024-04", "unknown"}
    # replacing those months' partitions gives exactly the full rebuild (staging's offenses)
    kept = [key for key in incremental.before if key[1] not in months]
    assert sorted(kept + incremental.selected) == incremental.staged
    assert len({offense for offense, _ in incremental.staged}) == len(incremental.staged)


@pytest.mark.slow
def test_the_incremental_run_goes_as_far_as_the_emulator_can(
    incremental: IncrementalRun,
) -> None:
    script = " ".join(incremental.script.split())
    # dbt's dynamic insert_overwrite: partitions from the new rows, replaced in one merge
    assert "declare dbt_partitions_for_replacement array<date>" in script
    assert "array_agg(distinct date_trunc(report_month_start, month) IGNORE NULLS)" in script
    assert (
        "when not matched by source and date_trunc(DBT_INTERNAL_DEST.report_month_start, month)"
        " in unnest(dbt_partitions_for_replacement) then delete" in script
    )
    # ... which the emulator cannot run
    assert incremental.run.returncode != 0
    assert EMULATOR_LIMIT in incremental.run.stdout
    # the pre-hook ran for real: the 'unknown' month (null partition) was deleted first, since
    # it is rewritten; nothing else changed before the script stopped
    unknown_before = [key for key in incremental.before if key[1] == "unknown"]
    assert unknown_before
    assert sorted(incremental.after) == sorted(set(incremental.before) - set(unknown_before))
    # what the emulator cannot run is still BigQuery SQL
    assert sql_problems({"run": incremental.script, "compiled": incremental.compiled}) == {}


# --- live: real BigQuery ---------------------------------------------------------------------


LIVE_NEEDS = (
    "CRIME_LIVE_TESTS",
    "CRIME_GCP_PROJECT",
    "CRIME_LIVE_LAKE_URL",
    "CRIME_STAGING_DATASET",
    "CRIME_BQ_DATASET",
)


@pytest.fixture
def live() -> Settings:
    if os.environ.get("CRIME_LIVE_TESTS") != "1" or not all(os.environ.get(n) for n in LIVE_NEEDS):
        pytest.skip(
            "live: set CRIME_LIVE_TESTS=1, CRIME_GCP_PROJECT, CRIME_LIVE_LAKE_URL (a scratch "
            "gs://BUCKET/PREFIX) and scratch CRIME_STAGING_DATASET and CRIME_BQ_DATASET (they "
            "are rebuilt) with credentials for them, to run dbt on real BigQuery"
        )
    from flows.settings import load_settings

    return load_settings().with_overrides(
        warehouse="bigquery", dbt_target="bigquery", lake_url=os.environ["CRIME_LIVE_LAKE_URL"]
    )


def partition_times(client: bigquery.Client, dataset: str) -> dict[str, object]:
    partitions = f"`{client.project}.{dataset}.INFORMATION_SCHEMA.PARTITIONS`"
    rows = client.query(
        f"select partition_id, last_modified_time from {partitions} where table_name = 'fct_crimes'"
    ).result()
    return {row[0]: row[1] for row in rows}


@pytest.mark.live
def test_live_incremental_run_rewrites_only_changed_partitions(
    live: Settings, tmp_path: Path
) -> None:
    from flows.gcp import bigquery_client
    from flows.lake.gcs import open_gcs_lake

    lake = open_gcs_lake(live.lake_url, SPD_CRIME, live)
    dbt = Dbt(dict(os.environ, CRIME_DBT_TARGET="bigquery"), tmp_path / "target")
    client = bigquery_client(live)
    fct = f"{client.project}.{live.bq_dataset}.fct_crimes"

    def fetch(rows: list[dict[str, str | None]], fetched_at: str) -> None:
        """What a run does: months into the lake on GCS, then the external staging table."""
        local, written = write_lake(tmp_path / "lake", rows, fetched_at=fetched_at)
        for entry in written:
            lake.write_month(entry.month, local.read_month(entry.month))
            lake.write_manifest(entry.month, entry.to_json())
        entries = sorted(parse_entries(lake.manifest_texts()).values(), key=lambda e: e.month)
        BigQueryWarehouse(live).stage(lake, SPD_CRIME, entries)

    try:
        first = rows_at_first_fetch()
        fetch(first, FIRST_FETCH)
        dbt("build", "--full-refresh")
        table = client.get_table(fct)
        assert table.time_partitioning.type_ == "MONTH"
        assert table.time_partitioning.field == "report_month_start"
        assert table.clustering_fields == ["precinct", "crime_class", "offense_group"]
        built = partition_times(client, live.bq_dataset)
        assert set(built) == {"202401", "202402", "202403", "__NULL__"}

        fetch(rows_at_second_fetch(first), SECOND_FETCH)
        dbt("build")  # incremental: insert_overwrite on real BigQuery
        rebuilt = partition_times(client, live.bq_dataset)
        # only the months the second fetch changed were rewritten, 2024-01 was not touched
        changed = {p for p, when in rebuilt.items() if when != built.get(p)}
        assert changed == {"202402", "202403", "202404", "__NULL__"}
        # and the table is what a full rebuild gives: staging's offenses, once each
        assert keys(client, fct) == keys(
            client, f"{client.project}.{live.bq_dataset}.stg_spd__offenses"
        )
    finally:
        client.close()
