"""Generate the sample datasets shipped with batchguard, deterministically.

Run ``python sample_data/generate.py`` to (re)write, next to this script:

credit.parquet
    20,000 rows of a credit-default classification table. Label ``default``
    (int64, 0/1, exactly 800 positives = 4.0%, so ``class_imbalance`` fires).
    Injected faults: 37 NaN in ``income``, 5 +/-inf in ``debt_to_income``,
    6 ``loan_amount`` values entered in cents instead of dollars (x100,
    ``outlier``), and a constant ``branch_code``.

sensors.parquet
    50,000 rows of a machine-sensor time series: 10,000 one-minute ticks x 5
    machines. Label ``failure`` (int64, 0 normal / 1 warning / 2 failure,
    exactly 90% / 8% / 2%, so ``class_imbalance`` fires). Injected faults:
    20 NaN in ``pressure``, 3 -inf in ``temperature``, 12 spikes in
    ``vibration`` (``outlier``), a stuck sensor ``humidity_2`` (99.64% one
    value: ``near_constant``; its q25 == q75 is not reported again), and
    ``rpm_setpoint`` sitting at its nominal value in 80% of rows (``zero_iqr``
    only).

clean.parquet
    10,000 rows of a healthy 3-class table (label ``segment``, shares
    40% / 35% / 25%) on which the rules find nothing.

faults.json
    The ground truth: every finding the rules below produce, per file, as
    computed by :func:`expected_faults` on the files read back from disk.

The rules (a reference implementation of the validator's default checks):

* ``nan`` / ``inf``: NaN / +-inf in a floating column (row-level).
* ``constant``: at most one distinct non-null, non-NaN value (column-level).
* ``near_constant``: not constant, top value share >= 0.99 of the non-null,
  non-NaN values (column-level).
* ``zero_iqr``: numeric non-label column, neither constant nor near-constant,
  q75 == q25 of its finite values (column-level).
* ``outlier``: numeric non-label column, not constant, IQR > 0: finite values
  beyond ``q25 - 5*IQR`` / ``q75 + 5*IQR`` (row-level).
* ``class_imbalance``: the label's smallest class share < 0.05 (column-level).

Quantiles are ``numpy.quantile`` with linear interpolation. After writing, the
script asserts that the rules find exactly the injected faults, so the data,
``faults.json`` and the README cannot drift apart.

Output is byte-for-byte reproducible for a given numpy/pyarrow version: fixed
seeds, fixed row-group size, no timestamps (parquet's ``created_by`` records
the pyarrow version, so another pyarrow may write different bytes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

OUT_DIR = Path(__file__).resolve().parent
ROW_GROUP_SIZE = 5_000  # several row groups per file, so chunked reading is exercised

NEAR_CONSTANT_SHARE = 0.99
OUTLIER_IQR_FACTOR = 5.0
MIN_CLASS_SHARE = 0.05
CHECK_ORDER = ("nan", "inf", "constant", "near_constant", "zero_iqr", "outlier", "class_imbalance")


# --------------------------------------------------------------------------- helpers


def _clipped_normal(
    rng: np.random.Generator, mean: float, sd: float, size: int, k: float = 3.0
) -> np.ndarray:
    """Normal draws clipped to ``mean +- k*sd``: light-tailed, never beyond the outlier fences."""
    return np.clip(rng.normal(mean, sd, size), mean - k * sd, mean + k * sd)


def _rank_labels(score: np.ndarray, counts: list[int]) -> np.ndarray:
    """Label rows by score rank: the top ``counts[-1]`` get the last class, and so on down.

    Gives exact class counts (class 0 gets the lowest ``counts[0]`` scores).
    """
    assert sum(counts) == len(score)
    order = np.argsort(score, kind="stable")
    labels = np.empty(len(score), dtype=np.int64)
    start = 0
    for cls, count in enumerate(counts):
        labels[order[start : start + count]] = cls
        start += count
    return labels


def _fault_rows(rng: np.random.Generator, n_rows: int, sizes: list[int]) -> list[np.ndarray]:
    """Disjoint, sorted sets of row positions spread over the whole file.

    A set of ``k`` rows takes one random row from each of ``k`` equal slices of
    the file, so faults are never bunched at its start (small batches see them late).
    """
    out = []
    for size in sizes:
        edges = np.linspace(0, n_rows, size + 1).astype(np.int64)
        out.append(np.sort(rng.integers(edges[:-1], edges[1:])))
    every = np.concatenate(out)
    assert len(np.unique(every)) == len(every), "fault rows overlap; change the fault seed"
    return out


def _write(table: pa.Table, name: str) -> Path:
    path = OUT_DIR / name
    pq.write_table(
        table,
        path,
        compression="snappy",
        row_group_size=ROW_GROUP_SIZE,
        write_statistics=True,
        use_dictionary=True,
    )
    return path


# --------------------------------------------------------------------------- datasets


def make_credit() -> tuple[pa.Table, dict]:
    """credit.parquet: 20,000 loan customers, imbalanced 0/1 label ``default``."""
    n = 20_000
    rng = np.random.default_rng(20_240_101)

    customer_id = np.sort(
        rng.choice(np.arange(1_000_000, 10_000_000), size=n, replace=False)
    ).astype(np.int64)
    age = rng.integers(21, 76, size=n).astype(np.int64)
    # log-normal incomes, clipped so the healthy tail stays well inside the fences
    income = np.round(np.clip(np.exp(rng.normal(np.log(55_000), 0.45, n)), 12_000, 180_000), 2)
    loan_amount = np.round(np.clip(np.exp(rng.normal(np.log(15_000), 0.45, n)), 1_000, 50_000), -1)
    credit_utilization = np.round(rng.beta(2.0, 5.0, n), 4)
    num_late_payments = np.clip(rng.poisson(1.2, n), 0, 10).astype(np.int64)
    account_age_months = rng.integers(1, 361, size=n).astype(np.int64)
    debt_to_income = np.round(_clipped_normal(rng, 0.32, 0.11, n, k=2.8), 4)
    regions = np.array(["north", "south", "east", "west", "central", "coastal"])
    region = regions[rng.choice(len(regions), size=n, p=[0.22, 0.20, 0.18, 0.17, 0.13, 0.10])]
    employments = np.array(["salaried", "self_employed", "contractor", "unemployed", "retired"])
    employment = employments[rng.choice(len(employments), size=n, p=[0.55, 0.17, 0.12, 0.06, 0.10])]
    branch_code = np.full(n, 417, dtype=np.int64)

    # default risk rises with utilization, late payments and debt load; exactly 4% positives
    score = (
        2.5 * credit_utilization
        + 0.6 * num_late_payments
        + 3.0 * debt_to_income
        - 0.01 * (age - 21)
        + 1.5 * (employment == "unemployed")
        + rng.logistic(0.0, 1.0, n)
    )
    default = _rank_labels(score, [n - 800, 800])

    # injected faults (own generator, so they do not move if the features change)
    faults = np.random.default_rng(7_001)
    nan_rows, inf_rows, cents_rows = _fault_rows(faults, n, [37, 5, 6])
    income[nan_rows] = np.nan
    debt_to_income[inf_rows] = np.array([np.inf, -np.inf, np.inf, np.inf, -np.inf])
    loan_amount[cents_rows] = loan_amount[cents_rows] * 100.0  # dollars entered as cents
    injected = {
        ("nan", "income"): nan_rows,
        ("inf", "debt_to_income"): inf_rows,
        ("constant", "branch_code"): None,
        ("outlier", "loan_amount"): cents_rows,
        ("class_imbalance", "default"): None,
    }

    table = pa.table(
        {
            "customer_id": pa.array(customer_id, pa.int64()),
            "age": pa.array(age, pa.int64()),
            "income": pa.array(income, pa.float64()),
            "loan_amount": pa.array(loan_amount, pa.float64()),
            "credit_utilization": pa.array(credit_utilization, pa.float64()),
            "num_late_payments": pa.array(num_late_payments, pa.int64()),
            "account_age_months": pa.array(account_age_months, pa.int64()),
            "debt_to_income": pa.array(debt_to_income, pa.float64()),
            "region": pa.array(region.tolist(), pa.string()),
            "employment": pa.array(employment.tolist(), pa.string()),
            "branch_code": pa.array(branch_code, pa.int64()),
            "default": pa.array(default, pa.int64()),
        }
    )
    return table, injected


def make_sensors() -> tuple[pa.Table, dict]:
    """sensors.parquet: 5 machines x 10,000 one-minute ticks, 3-class label ``failure``."""
    n_ticks, machines = 10_000, np.array(["M-01", "M-02", "M-03", "M-04", "M-05"])
    n_machines = len(machines)
    n = n_ticks * n_machines
    rng = np.random.default_rng(20_240_202)

    tick = np.repeat(np.arange(n_ticks), n_machines)  # rows ordered by time, then machine
    m = np.tile(np.arange(n_machines), n_ticks)
    timestamp = (1_704_067_200 + 60 * tick).astype(np.int64)  # 2024-01-01T00:00:00Z, 60 s steps
    machine_id = machines[m]
    day_phase = 2 * np.pi * (tick * 60 % 86_400) / 86_400

    temperature = np.round(
        np.array([61.0, 64.5, 70.0, 72.5, 67.0])[m]
        + 3.0 * np.sin(day_phase)
        + _clipped_normal(rng, 0.0, 1.5, n),
        2,
    )
    pressure = np.round(
        np.array([4.2, 4.5, 4.8, 4.4, 4.6])[m] + _clipped_normal(rng, 0.0, 0.15, n), 3
    )
    vibration = np.round(
        np.array([1.8, 2.0, 2.3, 2.1, 1.9])[m] + _clipped_normal(rng, 0.0, 0.30, n), 3
    )
    humidity = np.round(
        np.clip(45.0 + 8.0 * np.sin(day_phase - 1.0) + _clipped_normal(rng, 0.0, 3.0, n), 20, 80), 1
    )

    # setpoints change in 50-tick segments per machine; exactly 80% of segments run at nominal
    seg_len = 50
    n_blocks = (n_ticks // seg_len) * n_machines
    off = rng.choice(n_blocks, size=n_blocks // 5, replace=False)
    block_setpoint = np.full(n_blocks, 1500, dtype=np.int64)
    half = len(off) // 2
    below, above = np.arange(1400, 1500, 20), np.arange(1520, 1620, 20)
    block_setpoint[off[:half]] = rng.choice(below, size=half)
    block_setpoint[off[half:]] = rng.choice(above, size=len(off) - half)
    rpm_setpoint = block_setpoint[(tick // seg_len) * n_machines + m]
    rpm = np.round(rpm_setpoint + _clipped_normal(rng, 0.0, 40.0, n), 1)

    # humidity_2: a second humidity probe, stuck at 41.7 except for 6 short windows of 30 rows
    humidity_2 = np.full(n, 41.7)
    starts = np.array([3_100, 11_850, 19_400, 27_730, 36_020, 44_560])
    working = (starts[:, None] + np.arange(30)[None, :]).ravel()
    humidity_2[working] = np.round(humidity[working] + rng.normal(0.0, 0.5, len(working)), 1)

    # failure risk from vibration and running hot; exactly 90% / 8% / 2%
    score = (
        (vibration - vibration.mean()) / vibration.std()
        + (temperature - temperature.mean()) / temperature.std()
        + rng.normal(0.0, 0.8, n)
    )
    failure = _rank_labels(score, [45_000, 4_000, 1_000])

    faults = np.random.default_rng(7_002)
    nan_rows, ninf_rows, spike_rows = _fault_rows(faults, n, [20, 3, 12])
    pressure[nan_rows] = np.nan
    temperature[ninf_rows] = -np.inf
    vibration[spike_rows] = np.round(faults.uniform(80.0, 250.0, len(spike_rows)), 3)
    injected = {
        ("nan", "pressure"): nan_rows,
        ("inf", "temperature"): ninf_rows,
        ("outlier", "vibration"): spike_rows,
        ("near_constant", "humidity_2"): None,
        ("zero_iqr", "rpm_setpoint"): None,
        ("class_imbalance", "failure"): None,
    }

    table = pa.table(
        {
            "timestamp": pa.array(timestamp, pa.int64()),
            "machine_id": pa.array(machine_id.tolist(), pa.string()),
            "temperature": pa.array(temperature, pa.float64()),
            "pressure": pa.array(pressure, pa.float64()),
            "vibration": pa.array(vibration, pa.float64()),
            "humidity": pa.array(humidity, pa.float64()),
            "humidity_2": pa.array(humidity_2, pa.float64()),
            "rpm": pa.array(rpm, pa.float64()),
            "rpm_setpoint": pa.array(rpm_setpoint, pa.int64()),
            "failure": pa.array(failure, pa.int64()),
        }
    )
    return table, injected


def make_clean() -> tuple[pa.Table, dict]:
    """clean.parquet: 10,000 healthy rows, 3-class label ``segment`` (40/35/25%)."""
    n = 10_000
    rng = np.random.default_rng(20_240_303)

    record_id = np.arange(500_001, 500_001 + n, dtype=np.int64)
    age = rng.integers(18, 81, size=n).astype(np.int64)
    tenure_months = rng.integers(0, 121, size=n).astype(np.int64)
    monthly_spend = np.round(_clipped_normal(rng, 80.0, 25.0, n), 2)
    sessions_per_week = np.round(np.clip(rng.gamma(4.0, 1.5, n), 0.0, 20.0), 2)
    satisfaction = np.round(np.clip(rng.normal(3.6, 0.7, n), 1.0, 5.0), 2)
    channels = np.array(["web", "mobile", "store", "phone"])
    channel = channels[rng.choice(len(channels), size=n, p=[0.40, 0.35, 0.15, 0.10])]

    score = (
        (monthly_spend - 80.0) / 25.0
        + (sessions_per_week - 6.0) / 3.0
        + 0.5 * (satisfaction - 3.6) / 0.7
        + rng.normal(0.0, 1.0, n)
    )
    segment = _rank_labels(score, [4_000, 3_500, 2_500])

    table = pa.table(
        {
            "record_id": pa.array(record_id, pa.int64()),
            "age": pa.array(age, pa.int64()),
            "tenure_months": pa.array(tenure_months, pa.int64()),
            "monthly_spend": pa.array(monthly_spend, pa.float64()),
            "sessions_per_week": pa.array(sessions_per_week, pa.float64()),
            "satisfaction": pa.array(satisfaction, pa.float64()),
            "channel": pa.array(channel.tolist(), pa.string()),
            "segment": pa.array(segment, pa.int64()),
        }
    )
    return table, {}  # nothing injected


# (file name, builder, label column); each builder returns the table and what it injected:
# {(check, column): sorted row positions for row-level faults, None for column-level ones}
DATASETS = [
    ("credit.parquet", make_credit, "default"),
    ("sensors.parquet", make_sensors, "failure"),
    ("clean.parquet", make_clean, "segment"),
]


# --------------------------------------------------------------------------- reference rules


def _row_fault(check: str, column: str, mask: np.ndarray) -> dict:
    rows = np.flatnonzero(mask)
    return {
        "check": check,
        "column": column,
        "count": int(len(rows)),
        "rows": [int(r) for r in rows],
    }


def _column_fault(check: str, column: str) -> dict:
    return {"check": check, "column": column, "count": 1}


def expected_faults(table: pa.Table, label: str | None) -> list[dict]:
    """Every finding the default rules produce on ``table``, in column order, then check order."""
    found: list[dict] = []
    for name in table.column_names:
        col = table.column(name)
        assert col.null_count == 0, f"{name}: nulls are not allowed in the sample data"
        kind = col.type
        numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
        values = col.to_numpy() if numeric else np.asarray(col.to_pylist(), dtype=object)

        if pa.types.is_floating(kind):
            if np.isnan(values).any():
                found.append(_row_fault("nan", name, np.isnan(values)))
            if np.isinf(values).any():
                found.append(_row_fault("inf", name, np.isinf(values)))
            present = values[~np.isnan(values)]
        else:
            present = values

        _, counts = np.unique(present, return_counts=True)
        constant = len(counts) <= 1
        near_constant = not constant and counts.max() / counts.sum() >= NEAR_CONSTANT_SHARE
        if constant:
            found.append(_column_fault("constant", name))
        elif near_constant:
            found.append(_column_fault("near_constant", name))

        if numeric and name != label and not constant:
            finite = values[np.isfinite(values)].astype(np.float64)
            q25, q75 = np.quantile(finite, [0.25, 0.75])
            iqr = q75 - q25
            # One finding per degenerate column: near_constant already implies q25 == q75.
            if q75 == q25 and not near_constant:
                found.append(_column_fault("zero_iqr", name))
            if iqr > 0:
                as_float = values.astype(np.float64)
                lo, hi = q25 - OUTLIER_IQR_FACTOR * iqr, q75 + OUTLIER_IQR_FACTOR * iqr
                mask = np.isfinite(as_float) & ((as_float < lo) | (as_float > hi))
                if mask.any():
                    found.append(_row_fault("outlier", name, mask))

        if name == label:
            _, counts = np.unique(values, return_counts=True)
            if counts.min() / counts.sum() < MIN_CLASS_SHARE:
                found.append(_column_fault("class_imbalance", name))

    order = {name: i for i, name in enumerate(table.column_names)}
    found.sort(key=lambda f: (order[f["column"]], CHECK_ORDER.index(f["check"])))
    return found


# --------------------------------------------------------------------------- main


def main() -> None:
    truth: dict[str, dict] = {}
    for file_name, build, label in DATASETS:
        built, injected = build()
        path = _write(built, file_name)
        table = pq.read_table(path)  # check what is on disk, not what was built
        faults = expected_faults(table, label)

        found = {(f["check"], f["column"]): f.get("rows") for f in faults}
        assert found.keys() == injected.keys(), (
            f"{file_name}: rules found {sorted(found)}, injected {sorted(injected)}"
        )
        for key, rows in injected.items():
            if rows is None:
                assert found[key] is None, f"{file_name}: {key} should be column-level"
                continue
            assert found[key] == [int(r) for r in rows], (
                f"{file_name}: {key} rows differ from the injected ones"
            )
            # spread over the file, not bunched at the start, so small-batch streaming is exercised
            assert rows[0] < table.num_rows // 2 < rows[-1], f"{file_name}: {key} rows are bunched"

        truth[file_name] = {"rows": table.num_rows, "label": label, "faults": faults}
        summary = (
            ", ".join(f"{f['check']}:{f['column']}={f['count']}" for f in faults) or "no faults"
        )
        print(f"{file_name}: {table.num_rows} rows, {path.stat().st_size:,} bytes; {summary}")

    (OUT_DIR / "faults.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    print("wrote faults.json")


if __name__ == "__main__":
    main()
