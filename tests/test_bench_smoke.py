"""The benchmark's smoke test: `python -m benchmarks --quick` completes and writes its table.

Timings are not checked (CI machines vary); only that every run completed and every row of the
results and targets tables is in the report, so the benchmark cannot rot unnoticed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.model import ROWS, TARGETS

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_benchmark_writes_every_row(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text(encoding="utf-8")
    assert "## Results" in text
    assert "| run | months | rows | wall (s)" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    for label in [*ROWS.values(), *TARGETS.values()]:
        assert any(line.startswith(f"| {label}") for line in table), label
    assert "failed" not in "\n".join(table)
    assert "Machine:" in text
