"""Reading the sampler's stack counts: which activity took each thread's wall time."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OWN_PREFIXES = ("flows.", "benchmarks.")
NOT_OWN = ("benchmarks.sampler:",)
SOCKET_LEAVES = ("socket:", "ssl:", "http.client:")
PREFECT_IO_LEAVES = ("httpcore.", "httpx.", "h11.", "anyio.", "websockets.")
WAIT_LEAVES = (
    "threading:",
    "queue:",
    "concurrent.futures.",
    "selectors:",
    "asyncio.",
    "multiprocessing.",
    "subprocess:",
)
LIBRARIES = ("pyarrow", "pandas", "numpy", "duckdb", "dbt", "requests", "urllib3", "json")
IDLE = "idle"


@dataclass(frozen=True)
class Activity:
    name: str
    seconds: float
    share: float  # of all counted thread samples


@dataclass(frozen=True)
class ProfileSummary:
    seconds: float
    busy_thread_seconds: float
    top: list[Activity]
    by_kind: dict[str, float]  # kind -> thread-seconds


def _is_own(label: str) -> bool:
    return label.startswith(OWN_PREFIXES) and not label.startswith(NOT_OWN)


def _in(frames: list[str], package: str) -> bool:
    return any(f.startswith((package + ".", package + ":")) for f in frames)


def _kind(tail: list[str], leaf: str, has_own: bool) -> str:
    """What the thread was doing, judged from the frames below the innermost pipeline frame."""
    if leaf.startswith(SOCKET_LEAVES):
        if _in(tail, "requests") or _in(tail, "urllib3"):
            return "HTTP to the source"
        return "other network I/O"
    if leaf.startswith(PREFECT_IO_LEAVES):
        return "Prefect API I/O"
    if leaf.startswith(WAIT_LEAVES):
        return "waiting (future, lock, thread)"
    if _in(tail, "prefect"):
        return "in Prefect"
    if any("importlib._bootstrap" in f for f in tail):
        return "importing modules"
    for library in LIBRARIES:
        if _in(tail, library):
            return f"in {library}"
    if has_own:
        return "own code (and the C functions it calls)"
    return "other code"


def classify(stack: list[str], is_main: bool, thread: str = "") -> tuple[str, str]:
    """(activity name, kind) for one sampled stack (outermost frame first).

    Counted: the main thread, Prefect's task workers and prefect-dbt's threads. Other threads
    (Prefect's event loop, heartbeats, log and event shipping) run beside the work: `idle`.
    """
    own_positions = [i for i, label in enumerate(stack) if _is_own(label)]
    in_task_engine = any(label.startswith("prefect.task_engine") for label in stack)
    # prefect-dbt runs each dbt node's task in a thread of its own: `Thread-N (run_task)`
    in_prefect_dbt = any(label.startswith("prefect_dbt.") for label in stack) or thread.endswith(
        ("(run_task)", "dbt-callback-processor")
    )
    if not (is_main or own_positions or in_task_engine or in_prefect_dbt):
        return IDLE, IDLE
    inner = own_positions[-1] if own_positions else -1
    tail = stack[inner + 1 :]
    leaf = stack[-1] if stack else ""
    kind = _kind(tail, leaf, bool(own_positions))
    prefect_frames = [label for label in tail if label.startswith("prefect.")]
    deepest_prefect = prefect_frames[-1] if prefect_frames else ""
    if own_positions:
        name = " > ".join(stack[i] for i in own_positions[-2:])
        callee = tail[0] if tail else ""
        if callee:
            name += f" -> {callee}"
        if deepest_prefect and deepest_prefect != callee:
            name += f" ... {deepest_prefect}"
    elif in_prefect_dbt:
        name = f"prefect-dbt, a task or event per dbt node: {deepest_prefect or leaf}"
    elif in_task_engine:
        name = f"Prefect task engine, outside task bodies: {deepest_prefect or leaf}"
    else:
        name = f"main thread: {deepest_prefect or leaf}"
    return f"{name} [{kind}]", kind


def in_load_phase(stack: list[str], thread: str) -> bool:
    """The flow's month loading: its main thread in load_months, and the task workers
    (`ThreadPoolExecutor-N_M`) that run load-month tasks."""
    if any(label.startswith("flows.flow:load_month") for label in stack):
        return True
    return thread.startswith("ThreadPoolExecutor") and any(
        label.startswith("prefect.task_engine") for label in stack
    )


def summarize(
    path: Path, top_n: int = 4, within: Callable[[list[str], str], bool] | None = None
) -> ProfileSummary | None:
    """Top activities of a sampled run, or None when the sampler wrote nothing readable.

    `within(stack, thread name)`: count only the samples it accepts (one phase of a run).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    interval = float(data.get("interval_s", 0.01))
    activities: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for sample in data.get("samples", []):
        if within is not None and not within(list(sample["stack"]), str(sample["thread"])):
            continue
        name, kind = classify(list(sample["stack"]), bool(sample["main"]), str(sample["thread"]))
        if kind == IDLE:
            continue
        activities[name] += int(sample["count"])
        kinds[kind] += int(sample["count"])
    busy = sum(activities.values())
    top = [
        Activity(name, count * interval, count / busy if busy else 0.0)
        for name, count in activities.most_common(top_n)
    ]
    return ProfileSummary(
        seconds=float(data.get("seconds", 0.0)),
        busy_thread_seconds=busy * interval,
        top=top,
        by_kind={kind: count * interval for kind, count in kinds.most_common()},
    )
