"""A wall-clock stack sampler for every thread of a process, from the standard library alone.

pyinstrument and py-spy are not installed in the project's venv, and cProfile only sees the
thread that enabled it (the pipeline's months load in Prefect's worker threads). So every
`interval_s` this reads `sys._current_frames()`, keeps each thread's Python stack and counts
identical stacks. C code (pyarrow, sockets) shows as the Python frame that called it.

    python -m benchmarks.sampler --out prof.json [--interval 0.01] -m flows run ...

runs a module as `python -m` would, sampling it, and writes the counts when it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import sysconfig
import threading
import time
from collections import Counter
from collections.abc import Sequence
from types import FrameType

MAX_DEPTH = 80
_SITE = os.sep + "site-packages" + os.sep
_STDLIB = sysconfig.get_paths()["stdlib"]
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def frame_label(filename: str, qualname: str) -> str:
    """`package.module:function` for a frame: site-packages, the repo and the stdlib shortened."""
    path = filename
    if _SITE in path:
        path = path.split(_SITE, 1)[1]
    elif path.startswith(_REPO + os.sep):
        path = path[len(_REPO) + 1 :]
    elif path.startswith(_STDLIB + os.sep):
        path = path[len(_STDLIB) + 1 :]
    if path.endswith(".py"):
        path = path[:-3]
    module = path.replace(os.sep, ".").removesuffix(".__init__")
    return f"{module}:{qualname}"


def stack_of(frame: FrameType | None) -> tuple[str, ...]:
    """Outermost frame first."""
    labels: list[str] = []
    while frame is not None and len(labels) < MAX_DEPTH:
        code = frame.f_code
        labels.append(frame_label(code.co_filename, code.co_qualname))
        frame = frame.f_back
    labels.reverse()
    return tuple(labels)


class StackSampler:
    """Counts (thread name, stack) pairs every `interval_s` on a daemon thread."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.counts: Counter[tuple[str, bool, tuple[str, ...]]] = Counter()
        self.ticks = 0
        self.started = 0.0
        self.stopped = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stack-sampler", daemon=True)

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.stopped = time.monotonic()

    def _run(self) -> None:
        own = threading.get_ident()
        main = threading.main_thread().ident
        while not self._stop.wait(self.interval_s):
            names = {thread.ident: thread.name for thread in threading.enumerate()}
            frames = sys._current_frames()
            self.ticks += 1
            for ident, frame in frames.items():
                if ident == own:
                    continue
                key = (names.get(ident, f"thread-{ident}"), ident == main, stack_of(frame))
                self.counts[key] += 1

    def to_json(self) -> dict[str, object]:
        return {
            "interval_s": self.interval_s,
            "ticks": self.ticks,
            "seconds": round(self.stopped - self.started, 3),
            "samples": [
                {"thread": name, "main": is_main, "stack": list(stack), "count": count}
                for (name, is_main, stack), count in self.counts.most_common()
            ],
        }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sampler",
        usage="python -m benchmarks.sampler --out FILE [--interval S] -m MODULE [ARG ...]",
        description=__doc__,
    )
    parser.add_argument("--out", required=True, help="where to write the stack counts (JSON)")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between samples")
    # everything after `-m MODULE` belongs to the module, whatever it looks like
    if "-m" not in argv or argv.index("-m") + 1 >= len(argv):
        parser.error("-m MODULE is required")
    split = argv.index("-m")
    options = parser.parse_args(argv[:split])
    module, module_args = argv[split + 1], argv[split + 2 :]
    sampler = StackSampler(options.interval)
    sys.argv = [module, *module_args]
    code: int | str | None = 0
    sampler.start()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    finally:
        sampler.stop()
        with open(options.out, "w", encoding="utf-8") as sink:
            json.dump(sampler.to_json(), sink)
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
