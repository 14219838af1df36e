"""What every benchmark here shares: timing, child processes, summaries and tables.

The machine the figures come from is shared and has two cores, so every benchmark takes
the same precautions, and they live here once:

- **Interleaving.** The variants being compared take turns (:func:`interleaved` for
  loops over batches, :func:`time_calls` for whole calls, the order rotated each round),
  so a burst of load from other processes falls on all of them alike. Ratios are taken
  within a round, then the median over rounds (:func:`summarise`, :func:`ratio`).
- **Fresh processes.** :func:`run_python` runs a variant in its own interpreter and
  reports its wall time, CPU time and peak RSS. The peak RSS is the child's own
  ``VmHWM``, read as it exits: on Linux a child's ``ru_maxrss`` (from ``wait4`` or
  ``RUSAGE_CHILDREN``) keeps the high-water mark its parent had when it forked, so this
  module imports nothing heavy and the parent stays small.
- **Quiet first.** :func:`wait_for_quiet` waits, for a bounded time, until other
  processes leave the CPUs mostly idle, and says how busy they were.

Every benchmark takes ``--quick``: a smoke run of a few seconds on the
:data:`QUICK_ROWS`-row file from :func:`quick_file`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA_DIR = HERE / "data"
#: rows and row-group size of the ``--quick`` smoke file (several row groups, so every
#: code path that works per row group runs; more than 4 x 4,096 rows, so the float
#: columns overflow the exact value counts as on the real file)
QUICK_ROWS = 20_000
QUICK_ROW_GROUP = 8_192

#: one round: a figure per variant
Round = dict[str, float]
#: a loop to time: (open an iterator of batches, work done on each batch or None)
Variant = tuple[Callable[[], Iterator[Any]], Callable[[Any], Any] | None]


def log(msg: str) -> None:
    """Progress goes to stderr, so that stdout carries only the results."""
    print(msg, file=sys.stderr, flush=True)


# -- data ---------------------------------------------------------------------------------------
def quick_file() -> Path:
    """The small smoke-run file (``make_data``'s generator and faults), written once."""
    import make_data  # numpy and pyarrow: imported only when a file is needed

    return make_data.ensure(QUICK_ROWS, row_group=QUICK_ROW_GROUP)


def parquet_rows(path: Path | str) -> int:
    """Rows of a parquet file, from its footer."""
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def loader_rows(loader: Any) -> int:
    """Rows a DataLoader serves per epoch (those of its dataset)."""
    return len(loader.dataset)


def warm_cache(path: Path) -> None:
    """Read ``path`` once so that every variant finds it in the page cache."""
    with open(path, "rb") as fh:
        while fh.read(4 << 20):  # small reads: the parent stays small
            pass


# -- timing in this process ---------------------------------------------------------------------
def rotated(names: list[str], turn: int) -> list[str]:
    """``names`` rotated by ``turn`` places: the order of turn ``turn`` of an interleaved run."""
    k = turn % len(names)
    return names[k:] + names[:k]


def time_calls(
    fns: dict[str, Callable[[], Any]], rounds: int, *, warmup: int = 0, label: str = ""
) -> tuple[list[Round], list[Round]]:
    """Seconds of each call, round by round: wall clock and process CPU time (all threads).

    Each round calls every function once, in an order rotated from round to round. The
    first ``warmup`` rounds are run but not returned (page cache, imports, allocators).
    """
    wall: list[Round] = []
    cpu: list[Round] = []
    names = list(fns)
    for r in range(warmup + rounds):
        got_wall: Round = {}
        got_cpu: Round = {}
        for name in rotated(names, r):
            started, started_cpu = time.perf_counter(), time.process_time()
            fns[name]()
            got_wall[name] = time.perf_counter() - started
            got_cpu[name] = time.process_time() - started_cpu
        if label:
            log(f"{label} round {r}{' (warm-up)' if r < warmup else ''}: " + _show(got_wall, "s"))
        if r >= warmup:
            wall.append({k: got_wall[k] for k in names})
            cpu.append({k: got_cpu[k] for k in names})
    return wall, cpu


@dataclass
class _Loop:
    """One variant's open iterator and its running totals within a round."""

    make: Callable[[], Iterator[Any]]
    step: Callable[[Any], Any] | None
    it: Iterator[Any] = field(init=False)
    wall: float = 0.0
    cpu: float = 0.0
    batches: int = 0
    rows: int = 0
    #: whether ``it`` has served nothing yet
    fresh: bool = True

    def __post_init__(self) -> None:
        self.it = self.make()

    def run(self, count: int, count_rows: bool) -> None:
        """Serve ``count`` batches, timed; an iterator that ends is opened again."""
        started, started_cpu = time.perf_counter(), time.thread_time()
        left = count
        while left:
            served = self._serve(left, count_rows)
            left -= served
            if served:
                self.fresh = False
            elif self.fresh:
                raise RuntimeError("a benchmark loop yields no batches")
            if left:  # the iterator ended (an epoch of small data): go on with a new one
                self.it, self.fresh = self.make(), True
        self.cpu += time.thread_time() - started_cpu
        self.wall += time.perf_counter() - started
        self.batches += count

    def _serve(self, count: int, count_rows: bool) -> int:
        # The tight loops of the measurement: a builtin next() per batch and nothing else.
        it, step, rows, i = self.it, self.step, 0, 0
        try:
            if step is None and not count_rows:
                for i in range(count):  # noqa: B007 - i counts the batches served
                    next(it)
            elif step is None:
                for i in range(count):  # noqa: B007
                    rows += len(next(it)[0])
            else:
                for i in range(count):  # noqa: B007
                    step(next(it))
        except StopIteration:
            return i
        finally:
            self.rows += rows
        return count

    def warm(self, batches: int) -> None:
        """Serve ``batches`` untimed batches."""
        for _ in range(batches):
            try:
                b = next(self.it)
            except StopIteration:
                self.it = self.make()
                b = next(self.it)
            if self.step is not None:
                self.step(b)
            self.fresh = False


def interleaved(
    variants: dict[str, Variant | Callable[[], Iterator[Any]]],
    *,
    rounds: int,
    warmup: int,
    batches: int,
    chunk: int,
    short: dict[str, int] | None = None,
    per: str = "batch",
    label: str = "",
) -> tuple[list[Round], list[Round]]:
    """Time loops over batches that take turns; one warm-up round, then ``rounds`` rounds.

    In a round every variant's iterator is open, and they take turns of ``chunk`` batches
    (``short``: fewer for the named slow ones), the order rotated each turn, for
    ``batches // chunk`` turns; each first serves ``warmup`` untimed batches. ``per`` is
    ``"batch"`` (figures in µs per batch) or ``"row"`` (rows per second, a batch's rows
    being ``len(batch[0])``). Returns the rounds by wall clock and by this thread's CPU
    time (``time.thread_time``: the loops are single-threaded, and CPU time leaves out
    the time other processes held the cores).
    """
    if per not in ("batch", "row"):
        raise ValueError(f"per should be 'batch' or 'row', not {per!r}")
    wall: list[Round] = []
    cpu: list[Round] = []
    for r in range(rounds + 1):  # round 0: warm-up, not kept
        loops = {
            name: _Loop(*(v if isinstance(v, tuple) else (v, None))) for name, v in variants.items()
        }
        for loop in loops.values():
            loop.warm(warmup)
        names = list(loops)
        for turn in range(max(batches // chunk, 1)):
            for name in rotated(names, turn):
                loops[name].run((short or {}).get(name, chunk), per == "row")
        if per == "row":
            got_wall = {k: v.rows / v.wall for k, v in loops.items()}
            got_cpu = {k: v.rows / v.cpu for k, v in loops.items()}
        else:
            got_wall = {k: v.wall / v.batches * 1e6 for k, v in loops.items()}
            got_cpu = {k: v.cpu / v.batches * 1e6 for k, v in loops.items()}
        if label:
            unit = "rows/s" if per == "row" else "us"
            log(f"{label} round {r}{' (warm-up)' if not r else ''}: " + _show(got_wall, unit))
        if r:
            wall.append(got_wall)
            cpu.append(got_cpu)
    return wall, cpu


def _show(got: Round, unit: str) -> str:
    return ", ".join(f"{k.split(' (')[0]} {v:.4g} {unit}" for k, v in got.items())


# -- summaries ----------------------------------------------------------------------------------
def median(values: Iterable[float]) -> float:
    """The median, or NaN when there is nothing to take it of."""
    got = list(values)
    return statistics.median(got) if got else math.nan


def medians(rounds: list[Round]) -> Round:
    """Each variant's median over rounds."""
    return {k: median(r[k] for r in rounds) for k in rounds[0]} if rounds else {}


def ratio(rounds: list[Round], a: str, b: str) -> float:
    """Median over rounds of ``a / b`` taken within each round."""
    return median(r[a] / r[b] for r in rounds)


def paired_ratio(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Median of ``x / y`` over paired runs (one pair per round); None without runs."""
    if not xs or not ys:
        return None
    return median(x / y for x, y in zip(xs, ys, strict=False))


def summarise(
    rounds: list[Round], unit: str, ratios: dict[str, tuple[str, str]] | None = None
) -> dict[str, Any]:
    """Medians per variant and medians of per-round ratios (default: each to the first).

    ``ratios`` maps a label to the pair ``(a, b)`` whose ratio ``a / b`` it names.
    """
    names = list(rounds[0])
    if ratios is None:
        ratios = {f"{k} / {names[0]}": (k, names[0]) for k in names[1:]}
    return {
        unit: medians(rounds),
        "ratios": {label: ratio(rounds, a, b) for label, (a, b) in ratios.items()},
        "per_round": rounds,
    }


def without(value: Any, key: str = "per_round") -> Any:
    """``value`` with every ``key`` entry of its nested dicts left out (for printing)."""
    if not isinstance(value, dict):
        return value
    return {k: without(v, key) for k, v in value.items() if k != key}


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """A markdown table; ``align`` has one ``l`` or ``r`` per column (default: ``lrrr...``)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines)


def write_json(path: Path, results: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str))


# -- the machine --------------------------------------------------------------------------------
def machine(**versions: str) -> dict[str, Any]:
    """CPUs, memory, Python, the checkout's commit, and any ``versions`` given."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_gib"] = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "pipeline")
        info["git"] = head + (" (pipeline/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _cpu_times() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]  # all, idle + iowait


def busy_fraction(seconds: float = 0.5) -> float | None:
    """Share of all CPUs busy over ``seconds`` (other processes: nothing of ours runs now)."""
    try:
        total0, idle0 = _cpu_times()
        time.sleep(seconds)
        total1, idle1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    dt = total1 - total0
    return None if dt <= 0 else 1.0 - (idle1 - idle0) / dt


def wait_for_quiet(limit: float = 0.25, max_wait: float = 5.0) -> float | None:
    """Wait (up to ``max_wait`` s) until other processes use under ``limit`` of the CPUs.

    Returns the last busy share measured, to be kept with the run it preceded.
    """
    deadline = time.monotonic() + max_wait
    busy = busy_fraction()
    while busy is not None and busy > limit and time.monotonic() < deadline:
        time.sleep(1.0)
        busy = busy_fraction()
    return busy


# -- child processes ----------------------------------------------------------------------------
#: Runs ``SCRIPT ARGS``, ``-m MODULE ARGS`` or ``-c CODE ARGS`` as ``python`` would, and at
#: exit writes the process's peak RSS (VmHWM, MB) to the file named by ``$BENCH_HWM``.
_WRAPPER = """\
import atexit, os, runpy, sys
def _hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024
atexit.register(lambda: open(os.environ['BENCH_HWM'], 'w').write(str(_hwm())))
mode, target, sys.argv = sys.argv[1], sys.argv[2], sys.argv[2:]
if mode == '-m':
    runpy.run_module(target, run_name='__main__', alter_sys=True)
elif mode == '-c':
    sys.argv[0] = '-c'
    exec(compile(target, '<string>', 'exec'), {'__name__': '__main__'})
else:
    sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
    runpy.run_path(target, run_name='__main__')
"""


@dataclass
class Child:
    """A finished child process and what it cost."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    user_s: float
    sys_s: float
    #: the child's own peak RSS (VmHWM, MB), None if it died before writing it
    peak_rss_mb: float | None
    #: ``ru_maxrss`` from wait4, for comparison only: it includes the parent's high-water mark
    rusage_maxrss_mb: float

    def figures(self) -> dict[str, Any]:
        """The process's own figures, as kept with every run."""
        return {
            "process_wall_s": self.wall_s,
            "cpu_s": self.user_s + self.sys_s,
            "user_s": self.user_s,
            "sys_s": self.sys_s,
            "peak_rss_mb": self.peak_rss_mb,
            "rusage_maxrss_mb": self.rusage_maxrss_mb,
        }

    def result(self) -> dict[str, Any]:
        """The JSON object on the child's last line of stdout, with :meth:`figures` added."""
        return {**json.loads(self.stdout.strip().splitlines()[-1]), **self.figures()}


def run_python(args: Sequence[Any], *, ok: Sequence[int] = (0,)) -> Child:
    """Run ``python ARGS`` (a script, ``-m module`` or ``-c code``) in a fresh process.

    The child runs from the repository root with it on ``PYTHONPATH`` and a fixed hash
    seed; its output goes to temporary files (no pipe to fill). An exit status outside
    ``ok`` raises ``RuntimeError`` with the end of its stderr.
    """
    args = [str(a) for a in args]
    mode = args[0] if args[0] in ("-m", "-c") else "script"
    rest = args[1:] if mode != "script" else args
    fd, hwm_path = tempfile.mkstemp(prefix="bench-hwm-")
    os.close(fd)
    hwm = Path(hwm_path)
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT), "BENCH_HWM": str(hwm)}
    cmd = [sys.executable, "-c", _WRAPPER, mode, *rest]
    try:
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        text = hwm.read_text().strip()
    finally:
        hwm.unlink(missing_ok=True)
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(args)[:200]} failed ({proc.returncode}): {stderr[-3000:]}")
    return Child(
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        peak_rss_mb=float(text) if text and text != "None" else None,
        rusage_maxrss_mb=usage.ru_maxrss / 1024,  # Linux: KiB
    )
