"""A real BigQuery emulator (bqemulator) in a subprocess, and a stand-in for external tables.

    with running_bq_emulator(tmp_dir) as emulator:   # starts it, waits until it answers
        client = emulator.client()                   # anonymous, project "test"
        ...                                          # stopped by pid at the end

bqemulator lives in its own virtual environment, .venv-bqemu (it pins duckdb 1.5.5 and
fastapi versions of its own), made by tests/setup_bqemulator.sh; the tests fail, not skip,
without it. It runs on 127.0.0.1 only, with a private HOME that holds the DuckDB spatial
extension it needs offline, and with DuckDB's avro extension off, so it never tries the
extension repository on the internet.

No emulator supports external tables (`CREATE EXTERNAL TABLE` is a parse error in all of them),
so `StandInClient` runs that one statement differently: it loads the same Parquet files, from
the local copy of the lake, into a native table of the same name, with the hive partition column
added from the folder names. Every other call goes to the emulator as sent.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from flows.lake.local import LocalLake
from flows.lake.manifest import ManifestEntry, entry_for
from flows.sources.casting import convert_table
from flows.sources.socrata import UPDATED_AT
from flows.sources.specs import SPD_CRIME, DatasetSpec
from tests.processes import stop_process
from tests.socrata.data import month_of

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-bqemu"
PROJECT = "test"
SETUP_HINT = "run tests/setup_bqemulator.sh (make test does)"

# the statement flows.warehouse.bigquery.external_table_ddl writes
_EXTERNAL_DDL_RE = re.compile(
    r"^CREATE OR REPLACE EXTERNAL TABLE `(?P<table>[^`]+)`\s+"
    r"WITH PARTITION COLUMNS \((?P<column>\w+) STRING\)\s+"
    r"OPTIONS \(.*?hive_partition_uri_prefix = '(?P<prefix>[^']+)'",
    re.DOTALL,
)
BIGQUERY_TYPES = {
    pa.string(): "STRING",
    pa.float64(): "FLOAT64",
    pa.int64(): "INT64",
    # a parquet timestamp without time zone is wall-clock time: DATETIME in BigQuery
    pa.timestamp("us"): "DATETIME",
    pa.timestamp("us", tz="UTC"): "TIMESTAMP",
}


class EmulatorError(RuntimeError):
    """The emulator could not be started; the message says why and shows its log."""


@dataclass
class BqEmulator:
    endpoint: str  # the REST endpoint: api_endpoint, or BIGQUERY_EMULATOR_HOST
    grpc: str  # host:port of the Storage Read/Write API
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(
        self, location: str | None = None, http: requests.Session | None = None
    ) -> bigquery.Client:
        return bigquery.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.endpoint),
            location=location,
            _http=http,
        )

    def stand_in_client(self, lakes: dict[str, Path], location: str | None = None) -> StandInClient:
        return StandInClient(
            lakes,
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.endpoint),
            location=location,
            _http=RecordingSession(),
        )

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(line[:400] for line in text.splitlines()[-lines:])


def emulator_script() -> Path:
    script = VENV / "bin" / "bqemulator"
    if not script.exists():
        pytest.fail(f"{script} does not exist: {SETUP_HINT}.", pytrace=False)
    return script


def emulator_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        # the spatial extension was imported under this HOME by the setup script
        HOME=str(VENV / "home"),
        # avro would be downloaded from the internet: nothing here loads Avro
        BQEMU_ENABLE_FORMAT_EXTENSIONS="false",
        BQEMU_LOG_LEVEL="info",
        NO_PROXY="127.0.0.1,localhost",
    )
    env.pop("VIRTUAL_ENV", None)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_bq_emulator(log_dir: Path, timeout_s: float = 60.0) -> BqEmulator:
    """Start an ephemeral emulator on free 127.0.0.1 ports and wait until it answers."""
    script = emulator_script()
    rest_port, grpc_port = free_port(), free_port()
    log_path = log_dir / f"bqemulator-{rest_port}.log"
    command = [
        str(script),
        "start",
        "--rest-host",
        "127.0.0.1",
        "--rest-port",
        str(rest_port),
        "--grpc-host",
        "127.0.0.1",
        "--grpc-port",
        str(grpc_port),
        "--project",
        PROJECT,
    ]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=emulator_env(), cwd=log_dir
        )
    emulator = BqEmulator(
        f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}", process, log_path
    )
    try:
        _wait_until_answering(emulator, timeout_s)
    except BaseException:
        stop_bq_emulator(emulator)
        raise
    return emulator


def _wait_until_answering(emulator: BqEmulator, timeout_s: float) -> None:
    # no proxy: the emulator is on this machine and nothing else may be contacted
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"{emulator.endpoint}/bigquery/v2/projects/{PROJECT}/datasets"
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if emulator.process.poll() is not None:
            raise EmulatorError(
                f"bqemulator exited with code {emulator.process.returncode} at start; "
                f"its log:\n{emulator.log_tail()}"
            )
        try:
            with opener.open(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.1)
    raise EmulatorError(
        f"bqemulator did not answer at {emulator.endpoint} within {timeout_s:.0f}s "
        f"({last_error}); its log:\n{emulator.log_tail()}"
    )


def stop_bq_emulator(emulator: BqEmulator, timeout_s: float = 10.0) -> None:
    """Stop the emulator by its pid."""
    stop_process(emulator.process, timeout_s)


@contextmanager
def running_bq_emulator(log_dir: Path, timeout_s: float = 60.0) -> Iterator[BqEmulator]:
    emulator = start_bq_emulator(log_dir, timeout_s)
    try:
        yield emulator
    finally:
        stop_bq_emulator(emulator)


def create_dataset(client: bigquery.Client, dataset: str, location: str) -> None:
    """What Terraform does in production: the dataset, in the configured location."""
    reference = bigquery.Dataset(f"{PROJECT}.{dataset}")
    reference.location = location
    client.create_dataset(reference, exists_ok=True)


def hive_table(dataset_root: Path, partition_column: str) -> pa.Table:
    """Every month file under the lake's dataset folder, with the partition column from its path,
    as BigQuery's hive partitioning adds it (a STRING, last)."""
    parts = []
    for path in sorted(dataset_root.glob(f"{partition_column}=*/*.parquet")):
        table = pq.read_table(path)
        value = path.parent.name.split("=", 1)[1]
        parts.append(table.append_column(partition_column, pa.array([value] * len(table))))
    if not parts:
        raise AssertionError(f"no month files under {dataset_root}")
    return pa.concat_tables(parts)


def load_native_table(
    client: bigquery.Client, table_id: str, table: pa.Table, location: str | None = None
) -> bigquery.LoadJob:
    """Replace table_id with these rows, with an explicit schema (types as listed above)."""
    sink = io.BytesIO()
    pq.write_table(table, sink)
    sink.seek(0)
    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        schema=[bigquery.SchemaField(f.name, BIGQUERY_TYPES[f.type]) for f in table.schema],
    )
    job = client.load_table_from_file(sink, table_id, job_config=config, location=location)
    job.result()
    return job


def write_lake(
    lake_root: Path,
    rows: list[dict[str, str | None]],
    spec: DatasetSpec = SPD_CRIME,
    fetched_at: str | None = None,
) -> tuple[LocalLake, list[ManifestEntry]]:
    """Socrata-shaped rows into a local lake the way the loader writes one: typed by the loader's
    own conversion, one file per report month ('unknown' without a report time), and a manifest
    entry per month written after its file. Months without rows are left as they are, so a
    second call "fetches" only the months it is given; fetched_at fixes the time it records."""
    lake = LocalLake(str(lake_root), spec)
    by_month: dict[str, list[dict[str, str | None]]] = {}
    for row in rows:
        by_month.setdefault(month_of(row) or "unknown", []).append(row)
    entries = []
    for month, month_rows in sorted(by_month.items()):
        names = [UPDATED_AT, *spec.field_names]
        raw = pa.table(
            {name: pa.array([r.get(name) for r in month_rows], pa.string()) for name in names}
        )
        table, _ = convert_table(raw, spec)
        lake.write_month(month, table)
        entry = entry_for(month, table, spec.updated_at_column)
        if fetched_at is not None:
            entry = replace(entry, fetched_at=fetched_at)
        lake.write_manifest(month, entry.to_json())
        entries.append(entry)
    return lake, entries


class StandInClient(bigquery.Client):
    """An emulator client on which `CREATE OR REPLACE EXTERNAL TABLE` over the lake becomes a
    native table loaded from the same Parquet files (see the module's docstring).

    lakes maps each external table's hive_partition_uri_prefix (gs://...) to the local folder
    holding the same files.
    """

    def __init__(self, lakes: dict[str, Path], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lakes = lakes
        self.external_ddls: list[str] = []

    def query(self, query: str, *args: Any, **kwargs: Any) -> Any:
        match = _EXTERNAL_DDL_RE.match(query)
        if match is None:
            return super().query(query, *args, **kwargs)
        self.external_ddls.append(query)
        table = hive_table(self.lakes[match["prefix"]], match["column"])
        return load_native_table(self, match["table"], table, location=kwargs.get("location"))

    @property
    def recorder(self) -> RecordingSession:
        http = self._http
        assert isinstance(http, RecordingSession)
        return http


@dataclass(frozen=True)
class JobRequest:
    kind: str  # query or load
    location: str | None  # jobReference.location as sent
    statement: str  # the query, or the load's destination table


class RecordingSession(requests.Session):
    """The HTTP session a BigQuery client sends everything through, remembering each job it
    starts. It only watches: every request still goes to the server."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False  # no proxies from the environment: traffic stays on 127.0.0.1
        self.jobs: list[JobRequest] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if str(method) == "POST" and str(url).split("?")[0].endswith("/jobs"):
            self._record(kwargs.get("data"))
        return super().request(method, url, *args, **kwargs)

    def _record(self, data: Any) -> None:
        if isinstance(data, bytes) and data.startswith(b"--"):
            # a multipart upload: the job resource is the first part's JSON
            start, end = data.find(b"{"), data.find(b"\r\n--", 1)
            data = data[start:end]
        try:
            body = json.loads(data) if data else {}
        except ValueError:
            return
        configuration = body.get("configuration", {})
        location = body.get("jobReference", {}).get("location")
        if "query" in configuration:
            statement = configuration["query"].get("query", "")
            self.jobs.append(JobRequest("query", location, statement))
        elif "load" in configuration:
            table = configuration["load"].get("destinationTable", {})
            statement = ".".join(
                str(table.get(key, "")) for key in ("projectId", "datasetId", "tableId")
            )
            self.jobs.append(JobRequest("load", location, statement))


def bigquery_sql_problems(texts: dict[str, str]) -> dict[str, list[str]]:
    """What in each SQL text is not BigQuery's: the check that a DuckDB-only construct in a
    model fails the suite, which neither parsing nor the emulator gives on its own (sqlglot
    reads try_cast, `::` or extract(dow ...) in its BigQuery dialect without a word, and the
    emulator runs them on DuckDB).

    Runs in .venv-bqemu, where sqlglot is (bqemulator's own parser): `sql_problems` sends this
    function's source there, so it imports everything it uses itself.
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ErrorLevel, SqlglotError
    from sqlglot.tokens import TokenType

    # BigQuery's functions as the project uses them (GoogleSQL reference); anything else called
    # in a model fails until it is checked against that reference and added here
    functions = {
        # aggregate and window
        "any_value", "array_agg", "avg", "count", "countif", "cume_dist", "dense_rank",
        "first_value", "lag", "last_value", "lead", "logical_and", "logical_or", "max",
        "min", "nth_value", "ntile", "percent_rank", "rank", "row_number", "string_agg",
        "sum",
        # conditional
        "coalesce", "greatest", "if", "ifnull", "least", "nullif",
        # conversion
        "cast", "safe_cast",
        # string
        "char_length", "concat", "ends_with", "format", "initcap", "left", "length",
        "lower", "lpad", "ltrim", "regexp_contains", "regexp_extract", "regexp_replace",
        "replace", "reverse", "right", "rpad", "rtrim", "split", "starts_with", "strpos",
        "substr", "substring", "trim", "upper",
        # date and time
        "current_date", "current_datetime", "current_timestamp", "date", "date_add",
        "date_diff", "date_sub", "date_trunc", "datetime", "datetime_add", "datetime_diff",
        "datetime_trunc", "extract", "format_date", "format_datetime", "format_timestamp",
        "generate_date_array", "last_day", "parse_date", "parse_datetime", "parse_timestamp",
        "timestamp", "timestamp_add", "timestamp_diff", "timestamp_millis",
        "timestamp_seconds", "timestamp_sub", "timestamp_trunc", "unix_millis",
        "unix_seconds",
        # math
        "abs", "ceil", "ceiling", "div", "exp", "floor", "ieee_divide", "ln", "log",
        "log10", "mod", "pow", "power", "round", "safe_divide", "sign", "sqrt", "trunc",
        # arrays, structs, geography, hashing
        "array", "array_length", "generate_array", "st_geogpoint", "struct", "unnest",
        "farm_fingerprint", "md5", "sha256", "to_json_string",
    }  # fmt: skip
    # words followed by a parenthesis that are syntax, not calls
    syntax = {
        "all", "and", "any", "as", "between", "by", "case", "cluster", "distinct", "else",
        "except", "exists", "from", "in", "insert", "intersect", "interval", "into", "is",
        "join", "like", "not", "on", "options", "or", "over", "partition", "qualify",
        "select", "set", "some", "table", "then", "union", "using", "values", "when",
        "where", "window", "with",
    }  # fmt: skip
    extract_parts = {
        "microsecond", "millisecond", "second", "minute", "hour", "dayofweek", "day",
        "dayofyear", "week", "isoweek", "month", "quarter", "year", "isoyear", "date",
        "time", "datetime",
    }  # fmt: skip
    truncs = {"date_trunc", "datetime_trunc", "timestamp_trunc"}
    problems: dict[str, list[str]] = {}
    for name, sql in texts.items():
        found: list[str] = []
        try:
            tokens = sqlglot.tokenize(sql, read="bigquery")
            trees = sqlglot.parse(sql, read="bigquery", error_level=ErrorLevel.RAISE)
        except SqlglotError as exc:
            problems[name] = [f"not BigQuery SQL: {str(exc).splitlines()[0]}"]
            continue
        for index, token in enumerate(tokens):
            word = token.text.lower()
            if token.token_type == TokenType.DCOLON:
                found.append("`::` cast (DuckDB): use cast(x as type)")
            elif token.token_type == TokenType.ILIKE:
                found.append("ilike (DuckDB): use lower(x) like ...")
            elif token.token_type == TokenType.STRING and sql[token.start] == '"':
                found.append(f'"{token.text}" is a string in BigQuery: quote strings with \'')
            elif word == "exclude" and index and tokens[index - 1].token_type == TokenType.STAR:
                found.append("* exclude (DuckDB): use * except (...)")
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            is_call = following is not None and following.token_type == TokenType.L_PAREN
            # a `quoted` name before a parenthesis is a table's column list, not a call
            if not is_call or token.token_type == TokenType.IDENTIFIER or word in syntax:
                continue
            if not word.replace("_", "a").isalnum() or word[0].isdigit():
                continue  # a comma, an operator or a number before a parenthesis
            if word not in functions:
                found.append(f"{word}() is not a BigQuery function the suite knows")
            first = tokens[index + 2] if index + 2 < len(tokens) else None
            if word in truncs and first is not None and first.token_type == TokenType.STRING:
                found.append(f"{word}('part', x) is DuckDB's order: BigQuery's is (x, part)")
        for tree in trees:
            if tree is None:
                continue
            for node in tree.find_all(exp.Extract):
                part = node.this.name.lower()
                if part not in extract_parts:
                    found.append(f"extract({part} from ...) is not a BigQuery date part")
        if found:
            problems[name] = sorted(set(found))
    return problems


def sql_problems(texts: dict[str, str]) -> dict[str, list[str]]:
    """bigquery_sql_problems, run in .venv-bqemu (sqlglot comes with bqemulator there)."""
    import inspect

    python = VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} does not exist: {SETUP_HINT}.", pytrace=False)
    program = (
        inspect.getsource(bigquery_sql_problems)
        + "\nimport json, sys\nprint(json.dumps(bigquery_sql_problems(json.load(sys.stdin))))\n"
    )
    done = subprocess.run(
        [str(python), "-c", program],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"the BigQuery SQL check did not run: {done.stderr[-2000:]}")
    result: dict[str, list[str]] = json.loads(done.stdout)
    return result
