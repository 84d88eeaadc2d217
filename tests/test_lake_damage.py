"""A damaged lake is noticed: CLI runs against the local Socrata server, a real lake on disk and a
real DuckDB warehouse, as tests/test_faults.py runs them.

One clean run builds a lake and a warehouse; each case copies both, damages the copy as the issue
describes (a truncated file, a stray copy beside a month file, a stray backup folder, an
unreadable manifest entry, a footer that disagrees with its manifest) and runs again. The next run
exits 0, fetches again exactly the damaged month (and says why), and staging, the manifest and
fct_crimes all count the source's rows; what was stray is still there, named in a warning and
read by nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.lakecheck import source_keys, warehouse_keys
from tests.socrata import SocrataServer, generate_rows
from tests.test_cli_errors import last_line, run_cli

MONTHS = ["2023-12", "2024-01", "2024-02"]
ARGS = ["run", "--start-month", MONTHS[0], "--end-month", MONTHS[-1], "--refresh-months", "0"]
DAMAGED = "2024-02"
# what load_month logs for each month it loads: "<month> (<reason>): <rows> rows in ..."
_LOADED_RE = re.compile(r"\b(\d{4}-\d{2}|unknown) \((.+)\): (\d+) rows in \d+ page\(s\)")


@dataclass(frozen=True)
class Built:
    server: SocrataServer
    rows: list[dict]
    template: Path  # a lake and warehouse as the first clean run left them


@pytest.fixture(scope="module")
def built(prefect_api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    rows = generate_rows(MONTHS, rows_per_month=240, seed=31, null_report_rows=3)
    template = tmp_path_factory.mktemp("clean-run")
    with SocrataServer(rows) as server:
        server.start()
        first = run_cli(ARGS, env_for(template, server.url), prefect_api_url)
        assert first.returncode == 0, last_line(first.stderr)
        yield Built(server, rows, template)


def env_for(work: Path, url: str) -> dict[str, str]:
    return {
        "CRIME_SOURCE_URL": url,
        "CRIME_LAKE_URL": str(work / "lake"),
        "CRIME_DUCKDB_PATH": str(work / "warehouse.duckdb"),
        "CRIME_PAGE_SIZE": "100",
        "CRIME_HTTP_BACKOFF": "0.01",
    }


def copy_of(built: Built, work: Path) -> Path:
    shutil.copytree(built.template / "lake", work / "lake")
    shutil.copy2(built.template / "warehouse.duckdb", work / "warehouse.duckdb")
    return work


def month_file(work: Path, month: str) -> Path:
    return work / "lake" / "spd_crime" / f"report_month={month}" / "data.parquet"


def manifest_file(work: Path, month: str) -> Path:
    return work / "lake" / "_manifest" / "spd_crime" / f"{month}.json"


def loaded(output: str) -> dict[str, str]:
    """Month -> the reason it was fetched, from the run's log lines."""
    return {m.group(1): m.group(2) for m in _LOADED_RE.finditer(output)}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_exact(work: Path, rows: list[dict]) -> None:
    """Staging, the manifest and fct_crimes each hold the source's rows, month by month."""
    expected = source_keys(rows)
    manifest_dir = work / "lake" / "_manifest" / "spd_crime"
    manifest = {p.stem: json.loads(p.read_text())["rows"] for p in manifest_dir.glob("*.json")}
    with duckdb.connect(str(work / "warehouse.duckdb"), read_only=True) as con:
        staged = dict(
            con.execute(
                "select report_month, count(*) from crime_staging.spd_crime group by 1"
            ).fetchall()
        )
        total = con.execute("select count(*) from crime_staging.spd_crime").fetchone()
    assert total is not None
    assert total[0] == sum(manifest.values()) == len(rows)
    assert staged == manifest == {month: len(keys) for month, keys in expected.items()}
    fct = warehouse_keys(work / "warehouse.duckdb")
    assert fct == {month: sorted(keys) for month, keys in expected.items()}


def truncate(work: Path) -> None:
    path = month_file(work, DAMAGED)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def truncate_and_lose_manifest(work: Path) -> None:
    truncate(work)
    manifest_file(work, DAMAGED).unlink()


def fewer_rows(work: Path) -> None:
    # a whole, readable Parquet file that holds less than its manifest says
    path = month_file(work, DAMAGED)
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 5), path)


def other_schema(work: Path) -> None:
    # the same rows, but one column of another type than the manifest recorded
    path = month_file(work, DAMAGED)
    table = pq.read_table(path)
    index = table.schema.get_field_index("latitude")
    pq.write_table(
        table.set_column(index, "latitude", table.column(index).cast(pa.float32())), path
    )


def manifest_text(text: bytes) -> Callable[[Path], None]:
    def damage(work: Path) -> None:
        manifest_file(work, DAMAGED).write_bytes(text)

    return damage


def manifest_rows(value: str) -> Callable[[Path], None]:
    def damage(work: Path) -> None:
        path = manifest_file(work, DAMAGED)
        text = path.read_text()
        assert re.search(r'"rows": \d+', text)
        path.write_text(re.sub(r'"rows": \d+', f'"rows": {value}', text))

    return damage


@pytest.mark.slow
@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        pytest.param(truncate, "damaged file (unreadable)", id="truncated-file"),
        pytest.param(
            truncate_and_lose_manifest, "damaged file (unreadable)", id="truncated-no-manifest"
        ),
        pytest.param(fewer_rows, "damaged file ({short} rows, manifest says {full})", id="rows"),
        pytest.param(other_schema, "damaged file (schema differs from manifest)", id="schema"),
        pytest.param(
            manifest_text(b'{"month": "2024-02", "rows": 2\xff\xfe}'),
            "no manifest",
            id="manifest-not-utf8",
        ),
        pytest.param(manifest_rows("1e400"), "no manifest", id="manifest-rows-1e400"),
        pytest.param(manifest_rows("-7"), "no manifest", id="manifest-rows-negative"),
        pytest.param(manifest_rows("12.5"), "no manifest", id="manifest-rows-fraction"),
        pytest.param(manifest_text(b"{not json"), "no manifest", id="manifest-not-json"),
    ],
)
def test_a_damaged_month_is_fetched_again_and_the_run_converges(
    damage: Callable[[Path], None],
    reason: str,
    built: Built,
    prefect_api_url: str,
    tmp_path: Path,
) -> None:
    work = copy_of(built, tmp_path)
    full = len(source_keys(built.rows)[DAMAGED])
    damage(work)

    result = run_cli(ARGS, env_for(work, built.server.url), prefect_api_url)

    output = result.stdout + result.stderr
    assert result.returncode == 0, last_line(result.stderr)
    assert "Traceback" not in output
    assert loaded(output) == {DAMAGED: reason.format(short=full - 5, full=full)}
    assert pq.read_metadata(month_file(work, DAMAGED)).num_rows == full
    assert_exact(work, built.rows)

    # the run after it has nothing left to do
    again = run_cli(ARGS, env_for(work, built.server.url), prefect_api_url)
    assert again.returncode == 0, last_line(again.stderr)
    assert loaded(again.stdout + again.stderr) == {}


def stray_copy_in_a_month_folder(work: Path) -> list[Path]:
    # a download manager's "data (1).parquet": another month's rows, a whole Parquet file
    stray = month_file(work, DAMAGED).with_name("data (1).parquet")
    shutil.copy2(month_file(work, MONTHS[0]), stray)
    return [stray]


def stray_backup_folder(work: Path) -> list[Path]:
    # someone's backup of February, beside it: hive partitioning would read it as a month
    backup = work / "lake" / "spd_crime" / f"report_month={DAMAGED}.bak"
    backup.mkdir()
    shutil.copy2(month_file(work, DAMAGED), backup / "data.parquet")
    return [backup]


def stray_files_at_the_top(work: Path) -> list[Path]:
    dataset = work / "lake" / "spd_crime"
    strays = [dataset / "data.parquet", dataset / "report_month=2024-3"]
    shutil.copy2(month_file(work, DAMAGED), strays[0])
    strays[1].mkdir()
    return strays


@pytest.mark.slow
@pytest.mark.parametrize(
    "place",
    [stray_copy_in_a_month_folder, stray_backup_folder, stray_files_at_the_top],
    ids=["data-(1)-parquet", "bak-folder", "top-level"],
)
def test_stray_files_are_named_left_in_place_and_never_staged(
    place: Callable[[Path], list[Path]],
    built: Built,
    prefect_api_url: str,
    tmp_path: Path,
) -> None:
    work = copy_of(built, tmp_path)
    strays = place(work)
    kept = [p for s in strays for p in ([s] if s.is_file() else sorted(s.rglob("*")))]
    before = {path: digest(path) for path in kept if path.is_file()}

    result = run_cli(ARGS, env_for(work, built.server.url), prefect_api_url)

    output = result.stdout + result.stderr
    assert result.returncode == 0, last_line(result.stderr)
    # no month is damaged: the month files agree with their manifest, so nothing is fetched
    assert loaded(output) == {}
    assert "no month file" in output
    for path in strays:
        assert str(path) in output, f"{path} is not named in a warning"
        assert path.exists(), f"{path} was removed"
    assert {path: digest(path) for path in before} == before
    assert_exact(work, built.rows)
