"""Injected failures and a slow network, both deterministic so tests are reproducible."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import NamedTuple


class FaultRecord(NamedTuple):
    request_number: int
    kind: str
    target: str


@dataclass
class Faults:
    """Every Nth eligible `/resource/` request fails in the chosen way; 0 turns a kind off.

    The counter is shared by all kinds: when several match the same request, the first in
    `KINDS` order wins. Tests may change any attribute while the server runs.
    `fault_paths` limits faults to requests whose decoded target (path and query) contains one
    of the given substrings; `max_faults` stops injecting after that many.
    """

    KINDS = ("fail", "throttle", "error", "accepted", "drop", "truncate", "html")

    throttle_every: int = 0
    retry_after: str | float = "1"
    error_every: int = 0
    error_status: int = 500
    accepted_every: int = 0
    drop_every: int = 0
    truncate_every: int = 0
    html_every: int = 0
    fail_always: bool = False
    fault_paths: tuple[str, ...] = ()
    max_faults: int | None = None
    fault_log: list[FaultRecord] = field(default_factory=list)
    data_requests: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def pick(self, target: str) -> str | None:
        """Count one data request and name the fault it gets, if any."""
        with self._lock:
            if self.fault_paths and not any(part in target for part in self.fault_paths):
                return None
            self.data_requests += 1
            if self.max_faults is not None and len(self.fault_log) >= self.max_faults:
                return None
            kind = self._due(self.data_requests)
            if kind is not None:
                self.fault_log.append(FaultRecord(self.data_requests, kind, target))
            return kind

    def _due(self, number: int) -> str | None:
        every = {
            "throttle": self.throttle_every,
            "error": self.error_every,
            "accepted": self.accepted_every,
            "drop": self.drop_every,
            "truncate": self.truncate_every,
            "html": self.html_every,
        }
        if self.fail_always:
            return "fail"
        for kind in self.KINDS[1:]:
            if every[kind] > 0 and number % every[kind] == 0:
                return kind
        return None

    def kinds(self) -> list[str]:
        with self._lock:
            return [record.kind for record in self.fault_log]

    def reset(self) -> None:
        """Turn every fault off and forget the counter and the log."""
        with self._lock:
            self.throttle_every = self.error_every = self.accepted_every = 0
            self.drop_every = self.truncate_every = self.html_every = 0
            self.fail_always = False
            self.fault_paths = ()
            self.max_faults = None
            self.fault_log.clear()
            self.data_requests = 0

    def retry_after_header(self) -> str:
        """`Retry-After` in whole seconds when it is whole (`1`, not `1.0`), as servers send it."""
        value = float(self.retry_after)
        return str(int(value)) if value.is_integer() else str(value)


@dataclass(frozen=True)
class NetworkModel:
    """A wide-area link: a fixed delay before each response, then the body paced to a bandwidth."""

    latency_s: float = 0.5
    bandwidth_bytes_per_s: float = 5e6

    def chunk_size(self) -> int:
        # about 50 writes a second keeps the pacing smooth without a syscall per byte
        return max(1024, int(self.bandwidth_bytes_per_s / 50))
