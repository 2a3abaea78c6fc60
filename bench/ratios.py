"""Figures as ratios to an anchor measured in the same run (issue #16).

An absolute figure moves with the machine and with whatever else it is doing (the team's
machine has 2 cores and is rarely idle); the ratio to a comparable command run alongside it
moves far less, so targets are ratios. `interleave` runs every contender in turn — A B C, A B
C, … — after one unrecorded round (cold caches, a first migration), so that load, CPU
frequency and cache warmth fall on both sides of a ratio alike; each figure is the median.

    times = interleave(9, {"floor": command([python, "-c", "pass"], env), ...})
    rows = [Ratio("plur-post --schedule", times["post"], "python -c pass", times["floor"], 5)]
    report(rows)

A contender is any callable that returns one sample (ms, or a rate for `higher=True` rows):
it may prepare untimed work first and time only what is measured.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

Sample = Callable[[], float]


def command(argv: Sequence[str], env: Mapping[str, str], *, stdin: bytes | None = None) -> Sample:
    """A contender: the wall time of one run of `argv` in ms (it must exit 0; its output is
    not kept)."""

    def run() -> float:
        start = time.perf_counter()
        subprocess.run(
            list(argv),
            env=dict(env),
            input=stdin,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return (time.perf_counter() - start) * 1000

    return run


def instructions(argv: Sequence[str], env: Mapping[str, str]) -> Sample | None:
    """A contender: the instructions (in millions) one run of `argv` executes, counted by
    callgrind, which gives the same count at any load on the machine (time does not); None
    where valgrind is not installed. Valgrind's own start-up is not counted."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None

    def run() -> float:
        done = subprocess.run(
            [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
            env=dict(env),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            raise SystemExit(f"callgrind printed no count for {argv[0]}")
        return int(found.group(1)) / 1e6

    return run


def interleave(runs: int, contenders: Mapping[str, Sample]) -> dict[str, float]:
    """Median of `runs` samples of each contender, taken in turn after one unrecorded round."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for round_number in range(runs + 1):
        for name, sample in contenders.items():
            value = sample()
            if round_number:
                samples[name].append(value)
    return {name: statistics.median(values) for name, values in samples.items()}


class Ratio(NamedTuple):
    """One figure beside its anchor; `target` bounds figure / anchor (from above, or from
    below when `higher` is set: a rate). A row without a target only shows where a figure
    stands (what part of it is the libraries', say)."""

    figure: str
    value: float
    anchor: str
    anchor_value: float
    target: float | None
    higher: bool = False
    unit: str = "ms"

    @property
    def ratio(self) -> float:
        return self.value / self.anchor_value

    @property
    def ok(self) -> bool:
        if self.target is None:
            return True
        return self.ratio >= self.target if self.higher else self.ratio <= self.target


def _amount(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}" if unit.endswith("/s") else f"{value:,.1f} {unit}"


def report(rows: Sequence[Ratio]) -> int:
    """Print the rows as a table; the number of targets missed."""
    print(f"{'figure':<46} {'median':>11}  {'anchor':<34} {'median':>11} {'ratio':>7}  target")
    for row in rows:
        bound = "≥" if row.higher else "≤"
        verdict = "ok" if row.ok else "MISSED"
        target = "—" if row.target is None else f"{bound} {row.target:g}× {verdict}"
        print(
            f"{row.figure:<46} {_amount(row.value, row.unit):>11}  {row.anchor:<34} "
            f"{_amount(row.anchor_value, row.unit):>11} {row.ratio:>6.2f}×  {target}"
        )
    return sum(1 for row in rows if not row.ok)


def machine() -> str:
    """What the figures were measured on: CPU, cores, load, Python."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} cores, load average {load}; "
        f"Python {platform.python_version()}, SQLite {_sqlite_version()}, {platform.system()}"
    )


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


def bytecode_cached(env: dict[str, str], directory: Path) -> dict[str, str]:
    """`env` with bytecode cached under `directory`, as it is for an installed package, even
    where the environment sets PYTHONDONTWRITEBYTECODE: otherwise every run would compile the
    project's modules from source (~20 ms), a cost of the editable install users never pay."""
    cached = {**env, "PYTHONPYCACHEPREFIX": str(directory / "pycache")}
    cached.pop("PYTHONDONTWRITEBYTECODE", None)
    return cached


PYTHON = sys.executable
BIN = Path(sys.executable).parent
