"""A Socrata-compatible server on loopback with synthetic SPD crime data, for tests and demos.

    with SocrataServer(generate_rows(["2024-01"], 7000, seed=7)) as server:
        requests.get(f"{server.url}/resource/tazs-3rd5.csv", params={"$limit": "10"})

or from a shell: `python -m tests.socrata --port 8765` (prints `SOCRATA_URL=...`).
CSV quotes every value; a null is an empty unquoted field, so `,,` is null and `,"",` is "".
"""

from .data import FIELD_TYPES, FIELDS, generate_rows, invalid_utf8, month_of, month_range
from .faults import FaultRecord, Faults, NetworkModel
from .revisions import Revision
from .server import LoggedRequest, PageHook, SocrataServer

__all__ = [
    "FIELDS",
    "FIELD_TYPES",
    "FaultRecord",
    "Faults",
    "LoggedRequest",
    "NetworkModel",
    "PageHook",
    "Revision",
    "SocrataServer",
    "generate_rows",
    "invalid_utf8",
    "month_of",
    "month_range",
]
