"""StabilityMonitor: a fault-injection suite on real tables, NaN safety, restarts, host reads.

Each run trains a small MLP on a table shipped with scikit-learn (breast cancer, wine,
digits; features standardised) with SGD or Adam, batch 32, and injects one fault:

- ``data``: 1-4 rows of one batch scaled x100 with their label changed -> ``data``, those rows;
- ``lr``: the learning rate multiplied (x30 SGD, x100 Adam, x300 Adam on wine) -> ``learning_rate``;
- ``exploding``: a 10-layer ReLU stack initialised 3x Kaiming -> ``gradients``/``exploding``;
- ``vanishing``: a 12-layer sigmoid stack -> ``gradients``/``vanishing`` in the first layer;
- ``nan``: a module taking ``log`` of a negative for one step -> ``gradients``/``non_finite`` there;
- ``layer``: 30 added to the bias of layer "2" of a 3-hidden-layer ReLU MLP -> ``gradients``/
  ``exploding`` in layer "4", the first whose gradient blows up (its input is what grew).

The first verdict at or after the injection is the one scored. Clean runs must give none.
"""

from __future__ import annotations

import collections
import copy
import functools
import json
import math
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pipeline.guarding import guard
from pipeline.monitor import LossSpikeDetector, StabilityMonitor, Verdict

BATCH = 32
AT = 150  # the step of a mid-run fault
EXPECTED = {
    "data": ("data", "spike"),
    "lr": ("learning_rate", "spike"),
    "exploding": ("gradients", "exploding"),
    "vanishing": ("gradients", "vanishing"),
    "nan": ("gradients", "non_finite"),
    "layer": ("gradients", "exploding"),
}
TABLES = ("cancer", "wine", "digits")
OPTIMIZERS = ("sgd", "adam")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The MLPs are tiny: a second thread only waits for its share (slower on busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def table(name: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    loader = {"cancer": load_breast_cancer, "wine": load_wine, "digits": load_digits}[name]
    x, y = loader(return_X_y=True)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)  # digits has constant pixels
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y), int(y.max()) + 1


class Log(nn.Module):
    """``log(x + shift)`` after a ReLU: finite while ``shift > 0``."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x + self.shift)


def mlp(d: int, c: int, *, depth: int = 2, act: type[nn.Module] = nn.ReLU, gain: float = 0.0,
        log: bool = False) -> nn.Sequential:  # fmt: skip
    layers: list[nn.Module] = []
    width = d
    for i in range(depth):
        layers += [nn.Linear(width, 32), act()]
        if log and i == 0:
            layers.append(Log())  # module "2"
        width = 32
    layers.append(nn.Linear(width, c))
    model = nn.Sequential(*layers)
    if gain:
        with torch.no_grad():
            for m in model:
                if isinstance(m, nn.Linear):
                    nn.init.kaiming_normal_(m.weight)
                    m.weight.mul_(gain)
    return model


def model_for(case: str, d: int, c: int) -> nn.Sequential:
    if case == "exploding":
        return mlp(d, c, depth=10, gain=3.0)
    if case == "vanishing":
        return mlp(d, c, depth=12, act=nn.Sigmoid)
    if case == "layer":
        return mlp(d, c, depth=3)
    return mlp(d, c, log=case == "nan")


def optimizer_for(name: str, model: nn.Module) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return torch.optim.Adam(model.parameters(), lr=1e-3)


def batches(n: int, seed: int, steps: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out: list[torch.Tensor] = []
    while len(out) < steps:
        perm = torch.randperm(n, generator=g)
        out += [perm[b : b + BATCH] for b in range(0, n - BATCH + 1, BATCH)]
    return out[:steps]


class Run:
    """One training run with an optional fault; ``truth`` holds the injected rows."""

    def __init__(self, case: str, seed: int, ds: str, opt: str, steps: int, **monitor):
        torch.manual_seed(seed)
        self.x, self.y, self.c = table(ds)
        self.case, self.seed, self.ds, self.opt = case, seed, ds, opt
        self.model = model_for(case, self.x.shape[1], self.c)
        self.optimizer = optimizer_for(opt, self.model)
        self.monitor = StabilityMonitor(self.model, self.optimizer, **monitor)
        self.order = batches(len(self.x), seed, steps)
        self.truth: list[int] = []
        self.skipped: list[int] = []

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = self.order[step]
        xb, yb = self.x[idx].clone(), self.y[idx].clone()
        lr_factor = (30.0 if self.opt == "sgd" else 100.0) * (3 if self.ds == "wine" else 1)
        inject_fault(self, step, xb, yb, idx, lr_factor)
        return xb, yb, idx

    def step(self, step: int, *, nan_loss: bool = False) -> Verdict | None:
        xb, yb, idx = self.batch(step)
        per_row = nn.functional.cross_entropy(self.model(xb), yb, reduction="none")
        if nan_loss:
            per_row = per_row * torch.tensor(math.nan)
        self.optimizer.zero_grad()
        per_row.mean().backward()
        verdict = self.monitor.check(per_row, row_ids=idx)
        if verdict is not None and verdict.skip:
            self.skipped.append(step)
        else:
            self.optimizer.step()
        return verdict

    def go(self, start: int = 0) -> Run:
        for step in range(start, len(self.order)):
            self.step(step)
        return self

    def first(self, at: int) -> Verdict | None:
        return next((v for v in self.monitor.verdicts if v.step >= at), None)


def inject_fault(
    run: Any, step: int, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor, lr_factor: float
) -> None:
    """Write ``run.case``'s fault into step ``step``: into the batch (in place) or the run.

    ``run`` has ``case``, ``seed``, ``c`` (classes; 0 for a regression), ``model``,
    ``optimizer`` and ``truth`` (set to the rows a data fault changes). The fuller
    benchmark (``benchmarks/monitor_faults.py``) injects the same faults.
    """
    if run.case == "data" and step == AT:
        k = 1 + run.seed % 4
        xb[:k] *= 100  # a unit mix-up
        yb[:k] = yb[:k] + 10 if run.c == 0 else (yb[:k] + 1) % run.c
        run.truth = sorted(idx[:k].tolist())
    if run.case == "lr" and step == AT:
        for group in run.optimizer.param_groups:
            group["lr"] *= lr_factor
    if run.case == "nan":
        run.model[2].shift = -3.0 if step == AT else 1.0
    if run.case == "layer" and step == AT:
        with torch.no_grad():
            run.model[2].bias += 30


def is_right(case: str, run: Any, verdict: Verdict) -> bool:
    """Whether ``verdict`` names the injected ``case`` right: cause, kind, and rows or layer."""
    right = (verdict.cause, verdict.kind) == EXPECTED[case]
    if case == "data":
        right &= sorted(verdict.rows) == run.truth
    elif case == "nan":
        right &= verdict.layer == "2"
    elif case == "vanishing":
        right &= verdict.layer == "0"
    elif case == "layer":
        right &= verdict.layer == "4"
    elif case == "exploding":
        linear = {n for n, m in run.model.named_modules() if isinstance(m, nn.Linear)}
        right &= verdict.layer in linear
    return right


def scored(
    case: str, ds: str, opt: str, seed: int, runner: Any = None
) -> tuple[str, bool, Verdict | None]:
    """The first verdict's cause, whether it is right (cause, kind, rows, layer), the verdict.

    ``runner`` is the run's class (:class:`Run` by default; the benchmark passes its own).
    """
    at = 0 if case in ("exploding", "vanishing") else AT
    run = (runner or Run)(case, seed, ds, opt, at + 60).go()
    verdict = run.first(at)
    if verdict is None:
        return "none", False, None
    return verdict.cause, is_right(case, run, verdict), verdict


def suite(seeds: range, clean_steps: int) -> tuple[collections.Counter, int, int, list[str]]:
    """The confusion matrix (injected case, verdict cause), right events, clean verdicts."""
    confusion: collections.Counter = collections.Counter()
    right = clean = 0
    misses = []
    for ds in TABLES:
        for opt in OPTIMIZERS:
            for seed in seeds:
                run = Run("clean", seed, ds, opt, clean_steps).go()
                clean += len(run.monitor.verdicts)
                misses += [f"clean {ds} {opt} {seed}: {v}" for v in run.monitor.verdicts]
                for case in EXPECTED:
                    if case == "lr" and ds == "wine" and opt == "sgd":
                        continue  # wine separates: a 30x SGD step moves no loss at all
                    cause, ok, verdict = scored(case, ds, opt, seed)
                    confusion[case, cause] += 1
                    right += ok
                    if not ok:
                        misses.append(f"{case} {ds} {opt} {seed}: {verdict}")
    return confusion, right, clean, misses


def show(confusion: collections.Counter) -> str:
    causes = ["data", "learning_rate", "gradients", "activations", "unknown", "none"]
    lines = ["injected   " + " ".join(f"{c[:9]:>9}" for c in causes)]
    for case in EXPECTED:
        lines.append(f"{case:<10} " + " ".join(f"{confusion[case, c]:>9}" for c in causes))
    return "\n".join(lines)


def check_suite(seeds: range, clean_steps: int) -> None:
    confusion, right, clean, misses = suite(seeds, clean_steps)
    events = sum(confusion.values())
    runs = len(TABLES) * len(OPTIMIZERS) * len(seeds)
    print(f"\n{show(confusion)}\nright {right}/{events}; clean steps {runs * clean_steps}, "
          f"verdicts {clean}")  # fmt: skip
    assert clean == 0, misses
    assert right >= 0.95 * events, misses


def test_fault_injection_suite():
    check_suite(range(1), clean_steps=400)


@pytest.mark.slow
def test_fault_injection_suite_more_seeds():
    # with the fast case: 5 seeds, clean runs of 12,000 steps in all
    check_suite(range(1, 5), clean_steps=400)


# -- NaN safety -------------------------------------------------------------------------------


def test_one_nan_costs_one_step_and_the_next_spike_is_caught():
    run = Run("data", 1, "cancer", "sgd", AT + 20)
    for step in range(AT + 20):
        verdict = run.step(step, nan_loss=step == AT - 20)
        if step == AT - 20:
            assert verdict is not None and verdict.kind == "non_finite" and verdict.skip
    assert run.skipped == [AT - 20, AT]
    nan, spike = run.monitor.verdicts
    assert (spike.step, spike.cause, sorted(spike.rows)) == (AT, "data", run.truth)
    state = run.monitor.state_dict()
    assert all(math.isfinite(v) for d in state["loss"] for v in d["history"])
    assert np.isfinite(state["grads"]).all()


def test_a_non_finite_gradient_with_a_finite_loss_names_its_layer():
    run = Run("clean", 0, "wine", "adam", 40)
    for step in range(40):
        xb, yb, idx = run.batch(step)
        per_row = nn.functional.cross_entropy(run.model(xb), yb, reduction="none")
        run.optimizer.zero_grad()
        per_row.mean().backward()
        if step == 30:
            run.model[2].weight.grad[0, 0] = math.inf
        verdict = run.monitor.check(per_row, row_ids=idx)
        assert (verdict is None) == (step != 30)
        if verdict is None:
            run.optimizer.step()
    [verdict] = run.monitor.verdicts
    assert (verdict.cause, verdict.kind, verdict.layer, verdict.skip) == (
        "gradients", "non_finite", "2", True
    )  # fmt: skip


def test_a_non_finite_input_row_is_data():
    run = Run("clean", 0, "cancer", "adam", 30)
    run.go()
    xb, yb, idx = run.batch(5)
    xb[7, 3] = math.nan
    per_row = nn.functional.cross_entropy(run.model(xb), yb, reduction="none")
    run.optimizer.zero_grad()
    per_row.mean().backward()
    verdict = run.monitor.check(per_row, row_ids=idx)
    assert verdict is not None
    assert (verdict.cause, verdict.kind, verdict.rows, verdict.skip) == (
        "data", "non_finite", [int(idx[7])], True
    )  # fmt: skip


def test_loss_detector_survives_nan_and_keeps_the_guard_rule():
    det = LossSpikeDetector(window=50, threshold=6.0, min_history=10)
    values = [1.0 + 0.01 * (i % 5) for i in range(30)]
    assert not any(det.observe(v) for v in values)
    assert det.observe(math.nan) and det.observe(math.inf)
    assert not det.observe(1.02)
    assert det.observe(50.0)  # still caught after the NaN
    assert all(math.isfinite(v) for v in det.state_dict()["history"])


# -- restarts ---------------------------------------------------------------------------------


def test_state_round_trip_reproduces_the_decisions():
    """A run saved at step 102 and resumed makes the same decisions as the run that went on."""
    steps, cut = AT + 60, 102  # mid-way through a read period and an activation window
    options = {"sync_every": 4, "activations": True, "activation_window": 30}
    a = Run("data", 2, "cancer", "sgd", steps, **options)
    for step in range(cut):
        a.step(step)
    saved = (
        copy.deepcopy(a.model.state_dict()),
        copy.deepcopy(a.optimizer.state_dict()),
        json.loads(json.dumps(a.monitor.state_dict())),  # plain values only
    )
    a.go(cut)
    b = Run("data", 2, "cancer", "sgd", steps, **options)
    b.model.load_state_dict(saved[0])
    b.optimizer.load_state_dict(saved[1])
    b.monitor.load_state_dict(saved[2])
    b.go(cut)

    def decisions(run):
        return [
            (v.step, v.cause, v.kind, v.layer, v.rows, v.evidence) for v in run.monitor.verdicts
        ]

    assert decisions(a) == decisions(b)
    assert [v.step for v in a.monitor.verdicts] == [AT]
    assert a.monitor.state_dict()["loss"] == b.monitor.state_dict()["loss"]
    # a fresh monitor without the state: the step counter and the histories differ
    c = Run("data", 2, "cancer", "sgd", steps, **options)
    c.model.load_state_dict(saved[0])
    assert c.monitor.state_dict()["step"] == 0


# -- host reads ---------------------------------------------------------------------------------

#: tensor methods that read a value on the host (a device synchronisation on a GPU)
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy")


class CountHostReads:
    """Counts the host reads of tensors while active (patching ``torch.Tensor``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.calls: collections.Counter = collections.Counter()
        self.on = False
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._wrap(name, original))

    def _wrap(self, name, original):
        def counted(tensor, *args, **kwargs):
            if self.on:
                self.calls[name] += 1
            return original(tensor, *args, **kwargs)

        return counted

    def check(self, monitor: StabilityMonitor, loss: torch.Tensor, ids: torch.Tensor) -> int:
        self.calls.clear()
        self.on = True
        try:
            assert monitor.check(loss, row_ids=ids) is None
        finally:
            self.on = False
        return sum(self.calls.values())


@pytest.mark.parametrize(
    ("sync_every", "activations"), [(None, False), (8, False), (8, True), (1, False)]
)  # fmt: skip
def test_healthy_steps_read_nothing_on_the_host(monkeypatch, sync_every, activations):
    options = {"activations": activations, "activation_window": 64}
    if sync_every is None:  # the default
        sync_every = StabilityMonitor(nn.Linear(1, 1)).sync_every
        assert sync_every > 1
    else:
        options["sync_every"] = sync_every
    run = Run("clean", 0, "cancer", "adam", 200, **options)
    for step in range(100):
        run.step(step)  # warm up: histories full, weight norms read
    counter = CountHostReads(monkeypatch)
    reads = []
    for step in range(100, 164):
        xb, yb, idx = run.batch(step)
        per_row = nn.functional.cross_entropy(run.model(xb), yb, reduction="none")
        run.optimizer.zero_grad()
        per_row.mean().backward()
        reads.append(counter.check(run.monitor, per_row, idx))
        run.optimizer.step()
    reading = [step for step, n in zip(range(100, 164), reads, strict=True) if n]
    if sync_every == 1:
        assert set(reads) == {1}  # one transfer of the step's statistics, every step
        return
    # one read every `sync_every` steps (the statistics; every 10th step also the weights),
    # and the activation window's one read: never more
    due = {s for s in range(100, 164) if (s + 1) % sync_every == 0}
    window = {s for s in range(100, 164) if (s + 1) % 64 == 0} if activations else set()
    assert set(reading) == due | window, reads
    assert max(reads) <= 2 and sum(reads) == len(due) + len(window)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_healthy_steps_do_not_synchronise_cuda():
    torch.manual_seed(0)
    x, y, c = table("cancer")
    model = mlp(x.shape[1], c).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    mon = StabilityMonitor(model, opt, sync_every=16, activations=True, activation_window=1000)
    x, y = x.cuda(), y.cuda()
    order = [b.cuda() for b in batches(len(x), 0, 200)]
    for step, idx in enumerate(order):
        per_row = nn.functional.cross_entropy(model(x[idx]), y[idx], reduction="none")
        opt.zero_grad()
        per_row.mean().backward()
        healthy = step >= 64 and (step + 1) % 16 and step % 10
        torch.cuda.set_sync_debug_mode("error" if healthy else "default")
        try:
            assert mon.check(per_row, row_ids=idx) is None
        finally:
            torch.cuda.set_sync_debug_mode("default")
        opt.step()
    assert mon.verdicts == []


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    case=st.sampled_from(["clean", *EXPECTED]),
    seed=st.integers(0, 3),
    sync_every=st.integers(2, 40),
)  # fmt: skip
def test_verdicts_do_not_depend_on_how_often_the_host_reads(case, seed, sync_every):
    """Every step is judged by the same rules whenever it is read; on the CPU the trip
    flag is read at once, so a loss or gradient verdict is never late (and can skip)."""
    at = 0 if case in ("exploding", "vanishing") else AT

    def decisions(every: int) -> list[tuple]:
        run = Run(case, seed, "wine", "adam", at + 40, sync_every=every).go()
        return [(v.step, v.cause, v.kind, v.layer, v.rows, v.skip) for v in run.monitor.verdicts]

    each_step = decisions(1)
    assert decisions(sync_every) == each_step
    assert (case == "clean") == (each_step == [])


def micro_batches(run: Run, step: int, bad: str) -> tuple[Verdict | None, list[int]]:
    """One step as two micro-batches of 16 rows, a fault in the second: (verdict, bad ids)."""
    xb, yb, idx = run.batch(step)
    truth = [int(idx[16 + 5])]
    if bad == "nan":
        xb[16 + 5, 0] = math.nan
    else:
        xb[16 + 5] *= 100
        yb[16 + 5] = (yb[16 + 5] + 1) % run.c
    run.optimizer.zero_grad()
    losses = []
    for half in (slice(0, 16), slice(16, 32)):
        per_row = nn.functional.cross_entropy(run.model(xb[half]), yb[half], reduction="none")
        (per_row.mean() / 2).backward()
        losses.append(per_row)
    return run.monitor.check(torch.cat(losses), row_ids=idx), truth


@pytest.mark.parametrize("bad", ["nan", "spike"])
def test_accumulated_micro_batches_name_the_row_of_the_second(tmp_path, bad):
    run = Run("clean", 0, "cancer", "adam", AT + 1, quarantine=tmp_path / "q")
    for step in range(AT):
        run.step(step)
    verdict, truth = micro_batches(run, AT, bad)
    assert verdict is not None and verdict.cause == "data" and verdict.rows == truth
    run.monitor.close()
    if bad == "spike":  # the quarantined features are the second micro-batch's row
        features = np.array(pq.read_table(tmp_path / "q").column("features").to_pylist())
        assert np.allclose(features, run.x[truth].numpy() * 100, rtol=1e-5)


# -- attribution details ------------------------------------------------------------------------


def test_data_rows_go_to_the_guards_quarantine(tmp_path):
    x, y, _ = table("cancer")
    x, y = x.repeat(4, 1), y.repeat(4)  # four epochs in one pass
    ids = torch.arange(len(x)) + 10_000
    bad = [3 * 569 + 5, 3 * 569 + 9]  # in the fourth: the model has learnt something
    x[bad] *= 100
    y[bad] = 1 - y[bad]
    loader = DataLoader(TensorDataset(x, y, ids), batch_size=BATCH)
    g = guard(loader, quarantine=tmp_path / "q", row_id=2)
    torch.manual_seed(0)
    model = mlp(30, 2)
    opt = optimizer_for("adam", model)
    mon = StabilityMonitor(model, opt, quarantine=g)
    for xb, yb, rows in g:
        per_row = nn.functional.cross_entropy(model(xb), yb, reduction="none")
        opt.zero_grad()
        per_row.mean().backward()
        verdict = mon.check(per_row, row_ids=rows)
        if verdict is None or not verdict.skip:
            opt.step()
    g.close()
    [verdict] = mon.verdicts
    assert verdict.cause == "data" and sorted(verdict.rows) == [b + 10_000 for b in bad]
    assert g.stats.reasons["loss_spike"] == 1
    table_q = pq.read_table(tmp_path / "q")
    assert sorted(table_q.column("_row_id").to_pylist()) == [b + 10_000 for b in bad]
    reasons = table_q.column("_reasons").to_pylist()
    assert {r[0]["check"] for r in reasons} == {"loss_spike"}


def test_data_rows_go_to_a_quarantine_folder(tmp_path):
    run = Run("data", 0, "wine", "adam", AT + 1, quarantine=tmp_path / "q")
    run.go()
    run.monitor.close()
    table_q = pq.read_table(tmp_path / "q")
    assert table_q.column("_row_id").to_pylist() == run.truth
    features = np.array(table_q.column("features").to_pylist())
    assert np.allclose(features, run.x[run.truth].numpy() * 100, rtol=1e-5)


def test_a_scalar_loss_blames_the_batch():
    run = Run("clean", 0, "cancer", "adam", AT + 1)
    for step in range(AT + 1):
        xb, yb, idx = run.batch(step)
        if step == AT:
            yb = 1 - yb  # every label wrong: the whole batch spikes, gradients spread
        loss = nn.functional.cross_entropy(run.model(xb), yb)
        run.optimizer.zero_grad()
        loss.backward()
        verdict = run.monitor.check(loss, row_ids=idx)
        if verdict is None:
            run.optimizer.step()
    [verdict] = run.monitor.verdicts
    assert verdict.step == AT and verdict.cause == "data" and verdict.evidence["by_batch"] == 1
    assert verdict.rows == run.order[AT].tolist() and verdict.skip


def test_skip_policy_is_settable():
    run = Run("data", 0, "cancer", "sgd", AT + 1, skip_on=())
    run.go()
    [verdict] = run.monitor.verdicts
    assert verdict.cause == "data" and not verdict.skip and run.skipped == []
    run = Run("lr", 0, "digits", "sgd", AT + 20, skip_on=("learning_rate",))
    run.go()
    assert run.first(AT).cause == "learning_rate" and run.first(AT).skip


def test_dead_relu_layer_is_named():
    run = Run("clean", 0, "cancer", "adam", 260, activations=True, activation_window=50)
    for step in range(260):
        if step == AT:
            with torch.no_grad():
                run.model[0].bias -= 1e3  # every unit of the first ReLU off for good
        run.step(step)
    found = [v for v in run.monitor.verdicts if v.cause == "activations"]
    assert found and (found[0].kind, found[0].layer) == ("dead", "1")
    assert found[0].evidence["dead_share"] == 1.0


def test_saturated_sigmoid_layer_is_named():
    torch.manual_seed(0)
    x, y, c = table("wine")
    model = mlp(x.shape[1], c, act=nn.Sigmoid)
    with torch.no_grad():
        model[2].weight.mul_(60)  # the second sigmoid's inputs far beyond +-5
    opt = optimizer_for("adam", model)
    mon = StabilityMonitor(model, opt, activations=True, activation_window=20)
    for idx in batches(len(x), 0, 20):
        per_row = nn.functional.cross_entropy(model(x[idx]), y[idx], reduction="none")
        opt.zero_grad()
        per_row.mean().backward()
        mon.check(per_row, row_ids=idx)
        opt.step()
    found = [v for v in mon.verdicts if v.kind == "saturated"]
    assert found and (found[0].cause, found[0].layer) == ("activations", "3")


def test_verdicts_read_well():
    run = Run("data", 0, "cancer", "sgd", AT + 1).go()
    [verdict] = run.monitor.verdicts
    text = str(verdict)
    assert text.startswith(f"step {AT}: data/spike") and "skip" in text
    assert verdict.advice.endswith(".") and verdict.advice.count(". ") == 0
    assert set(verdict.evidence) >= {"loss", "top_row", "row_share"}
