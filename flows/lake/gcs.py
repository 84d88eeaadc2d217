"""The data lake on Google Cloud Storage: the local lake's hive layout under gs://bucket/prefix.

    gs://<bucket>/<prefix>/<dataset>/report_month=2024-05/data.parquet
    gs://<bucket>/<prefix>/<dataset>/report_month=unknown/data.parquet

A month is replaced by one upload of the whole file, which GCS makes atomic: a reader sees the old
object or the new one, never part of either. The upload carries an `if_generation_match`
precondition taken when the write starts, so a run that replaced the month in the meantime makes
this write fail loudly instead of being overwritten silently.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import google.cloud.storage as storage
import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core import exceptions as api_errors

from flows.errors import PipelineError
from flows.gcp import lake_storage_client
from flows.lake.layout import (
    DATA_FILE,
    GCS_SCHEME,
    MonthFooter,
    footer_of,
    parquet_bytes_writer,
    parse_gcs_url,
    unreadable_reason,
)
from flows.lake.locking import file_lock
from flows.lake.manifest import MANIFEST_DIR
from flows.settings import Settings
from flows.sources.specs import DatasetSpec

log = logging.getLogger(__name__)

SCHEME = GCS_SCHEME
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
# one ranged read of this size holds the footer of any month file the pipeline writes
FOOTER_READ_BYTES = 64 * 1024
_PARQUET_MAGIC = b"PAR1"
_MONTH_VALUE = r"[0-9]{4}-[0-9]{2}|unknown"
_MONTH_VALUE_RE = re.compile(rf"^(?:{_MONTH_VALUE})$")
_RELOAD = "load the month again with --force to replace it"
# footers are read this many at a time: each is one small ranged GET, so latency dominates
FOOTER_READERS = 8


class GcsLake:
    """A prefix in a GCS bucket. Month objects are replaced by one guarded upload each."""

    def __init__(
        self,
        url: str,
        spec: DatasetSpec,
        client: storage.Client,
        lock_dir: str | None = None,
    ) -> None:
        location = parse_gcs_url(url)
        self.spec = spec
        self.client = client
        self.bucket_name = location.bucket
        self._bucket = client.bucket(location.bucket)
        # the object-name prefix of the dataset: exactly what follows gs://bucket/ in root
        self.base = "/".join(part for part in (location.prefix, spec.name) if part)
        self.root = f"{SCHEME}{location.bucket}/{self.base}"
        self._lock_dir = lock_dir or str(Path(tempfile.gettempdir(), "seattle-crime-locks"))
        self._object_re = re.compile(
            rf"^{re.escape(self._partition_prefix())}({_MONTH_VALUE})/{re.escape(DATA_FILE)}$"
        )

    def _partition_prefix(self) -> str:
        return f"{self.base}/{self.spec.partition_column}="

    def object_name(self, month: str) -> str:
        if not _MONTH_VALUE_RE.match(month):
            raise ValueError(f"{month!r} is not a lake partition: expected YYYY-MM or unknown")
        return f"{self._partition_prefix()}{month}/{DATA_FILE}"

    def url_of(self, month: str) -> str:
        return f"{SCHEME}{self.bucket_name}/{self.object_name(month)}"

    def months(self) -> set[str]:
        # one prefix listing of names only: a partition holds one object, so this is one page
        # per thousand months, and nothing is downloaded
        with self._gcs_errors():
            blobs = self.client.list_blobs(
                self._bucket,
                prefix=self._partition_prefix(),
                fields="items(name),nextPageToken",
            )
            names = [blob.name for blob in blobs]
        return {match.group(1) for name in names if (match := self._object_re.match(name))}

    def month_files(self) -> dict[str, str]:
        """The exact gs:// URL of every month's object, by month: what staging reads."""
        return {month: self.url_of(month) for month in self.months()}

    def footers(self) -> dict[str, MonthFooter]:
        """Every month's footer from ranged reads of its object's tail (read_footer): one
        listing for names, sizes and generations, then one small GET per month, a few at once.
        Each read is pinned to the listed generation, so it sees the object that was listed."""
        blobs = self._month_blobs()
        if not blobs:
            return {}
        with ThreadPoolExecutor(max_workers=min(FOOTER_READERS, len(blobs))) as pool:
            found = dict(zip(blobs, pool.map(self._footer, blobs.values()), strict=True))
        return dict(sorted(found.items()))

    def strays(self) -> list[str]:
        """Every object under the dataset's folder that is no month object, by URL: never
        deleted, only named (a copy, a backup, a download left behind)."""
        with self._gcs_errors():
            blobs = self.client.list_blobs(
                self._bucket, prefix=f"{self.base}/", fields="items(name),nextPageToken"
            )
            names = [blob.name for blob in blobs]
        return sorted(
            f"{SCHEME}{self.bucket_name}/{name}"
            for name in names
            if not self._object_re.match(name)
        )

    def _month_blobs(self) -> dict[str, storage.Blob]:
        with self._gcs_errors():
            blobs = self.client.list_blobs(
                self._bucket,
                prefix=self._partition_prefix(),
                fields="items(name,size,generation),nextPageToken",
            )
            listed = list(blobs)
        return {
            match.group(1): blob for blob in listed if (match := self._object_re.match(blob.name))
        }

    def _footer(self, blob: storage.Blob) -> MonthFooter:
        try:
            with self._gcs_errors():
                return footer_of(read_footer(blob))
        except PipelineError as exc:
            # the object's own problem (too small, no magic); not the bucket's or credentials'
            if not isinstance(exc, NotParquetError):
                raise
            return MonthFooter.unreadable(exc.reason)
        except (pa.ArrowException, ValueError) as exc:
            return MonthFooter.unreadable(unreadable_reason(exc))
        except api_errors.NotFound:
            # replaced or removed since the listing: it is not a month file any more
            return MonthFooter.unreadable("the object changed while it was being checked")

    def write_month(self, month: str, table: pa.Table) -> str:
        name = self.object_name(month)
        with self._gcs_errors():
            # the generation is taken before encoding, so the guard covers the whole write
            generation = self._generation(name)
            payload = encode_parquet(table)
            blob = self._bucket.blob(name)
            try:
                blob.upload_from_file(
                    io.BytesIO(payload),
                    size=len(payload),
                    content_type=PARQUET_CONTENT_TYPE,
                    if_generation_match=generation,
                )
            except api_errors.PreconditionFailed:
                if not self._holds(name, payload):
                    raise PipelineError(
                        f"{self.url_of(month)} was replaced by another run while this run was "
                        f"writing it, so this run's copy of {month} was not written: check that "
                        "only one run loads this lake, then run again."
                    ) from None
        log.debug(
            "wrote %s (%d rows, generation %s)", self.url_of(month), table.num_rows, blob.generation
        )
        return self.url_of(month)

    def row_count(self, month: str) -> int:
        with self._gcs_errors():
            blob = self._existing_blob(month)
            return int(read_footer(blob).num_rows)

    def read_month(self, month: str) -> pa.Table:
        with self._gcs_errors():
            blob = self._existing_blob(month)
            # the blob's generation pins the download to the object whose metadata was read
            data = blob.download_as_bytes()
        return pq.read_table(pa.BufferReader(data))

    def _manifest_prefix(self) -> str:
        parent = self.base.rsplit("/", 1)[0] if "/" in self.base else ""
        return "/".join(part for part in (parent, MANIFEST_DIR, self.spec.name) if part) + "/"

    def write_manifest(self, month: str, text: str) -> None:
        with self._gcs_errors():
            blob = self._bucket.blob(f"{self._manifest_prefix()}{month}.json")
            blob.upload_from_string(text, content_type="application/json")

    def manifest_texts(self) -> dict[str, str]:
        prefix = self._manifest_prefix()
        with self._gcs_errors():
            blobs = list(self.client.list_blobs(self._bucket, prefix=prefix))
            # a lenient decode: a text that is not UTF-8 reaches parse_entries, which refuses it
            # (and says so) instead of this listing failing the run
            return {
                blob.name[len(prefix) : -len(".json")]: blob.download_as_bytes().decode(
                    "utf-8", errors="replace"
                )
                for blob in blobs
                if blob.name.endswith(".json")
            }

    def lock(self, wait_s: float) -> AbstractContextManager[None]:
        # a lock file on this machine, keyed by the lake's URL: it serialises the runs of the
        # deployment and the CLI here, and the kernel frees it if a run dies. runs on other
        # machines are not serialised by it; the generation preconditions make them fail loudly
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.root)
        return file_lock(str(Path(self._lock_dir, f"{safe}.lock")), wait_s)

    def _generation(self, name: str) -> int:
        # 0 is gcs's precondition for "the object must not exist yet"
        blob = self._bucket.get_blob(name)
        return 0 if blob is None or blob.generation is None else blob.generation

    def _holds(self, name: str, payload: bytes) -> bool:
        # a retried upload whose first attempt landed is refused with 412 too: it is not a
        # conflict when the object now holds exactly these bytes
        current = self._bucket.get_blob(name)
        return current is not None and current.md5_hash == md5_base64(payload)

    def _existing_blob(self, month: str) -> storage.Blob:
        blob = self._bucket.get_blob(self.object_name(month))
        if blob is not None:
            return blob
        if not self._bucket_exists():
            raise self._missing_bucket()
        raise PipelineError(
            f"{self.url_of(month)} does not exist: month {month} is not in the lake, "
            "so load it first."
        )

    def _bucket_exists(self) -> bool:
        try:
            return bool(self._bucket.exists())
        except api_errors.Forbidden:
            # object-only permissions (roles/storage.objectAdmin) cannot see the bucket itself
            return True

    def _missing_bucket(self) -> PipelineError:
        return PipelineError(
            f"The GCS bucket {self.bucket_name!r} does not exist: create it with "
            "`terraform apply` in terraform/, or set CRIME_LAKE_URL to gs://BUCKET/PREFIX "
            "in an existing bucket."
        )

    @contextmanager
    def _gcs_errors(self) -> Iterator[None]:
        """Turn the GCS errors a user can act on into one-sentence PipelineErrors."""
        try:
            yield
        except api_errors.NotFound:
            if not self._bucket_exists():
                raise self._missing_bucket() from None
            raise
        except api_errors.Forbidden:
            # the response text can name the service account; the message keeps to the bucket
            raise PipelineError(
                f"The GCP credentials may not read and write objects in bucket "
                f"{self.bucket_name!r}: grant them roles/storage.objectAdmin on it "
                "(`terraform apply` does), or use the credentials block that has it."
            ) from None


def encode_parquet(table: pa.Table) -> bytes:
    """The month file in memory, encoded by the lake's one Parquet writer."""
    sink = io.BytesIO()
    parquet_bytes_writer(table, sink)
    return sink.getvalue()


def md5_base64(payload: bytes) -> str:
    # the form of gcs's md5Hash metadata; an integrity check, not security
    return base64.b64encode(hashlib.md5(payload, usedforsecurity=False).digest()).decode()


class NotParquetError(PipelineError):
    """A month object whose tail is no Parquet footer; reason says how, in a few words."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where} {reason}: {_RELOAD}.")
        self.reason = reason


def read_footer(blob: storage.Blob) -> pq.FileMetaData:
    """The Parquet footer from ranged reads of the object's tail, never the whole object.

    An object that cannot hold a footer raises NotParquetError; a footer arrow cannot parse
    raises arrow's own error."""
    size = blob.size or 0
    where = f"gs://{blob.bucket.name}/{blob.name}"
    if size < 2 * len(_PARQUET_MAGIC) + 4:
        raise NotParquetError(where, "is too small to be Parquet")
    tail = blob.download_as_bytes(start=max(0, size - FOOTER_READ_BYTES))
    if tail[-4:] != _PARQUET_MAGIC:
        raise NotParquetError(where, "is not a Parquet file")
    needed = int.from_bytes(tail[-8:-4], "little") + 8
    if needed > size:
        raise NotParquetError(where, "has a footer longer than the file")
    if needed > len(tail):
        # a footer larger than the first read: fetch exactly the footer
        tail = blob.download_as_bytes(start=max(0, size - needed))
    # arrow reads the footer from the end of the buffer; the column data is never touched
    return pq.read_metadata(pa.BufferReader(tail))


def open_gcs_lake(url: str, spec: DatasetSpec, settings: Settings) -> GcsLake:
    """The GCS lake with a storage client built the production way, through prefect-gcp."""
    location = parse_gcs_url(url)  # a typo fails before any credentials are looked up
    client = lake_storage_client(settings, location.bucket, location.prefix)
    return GcsLake(url, spec, client)
