"""``ValidationOptions``: defaults, and one clear error for each bad setting."""

from __future__ import annotations

from dataclasses import fields

import pytest

from pipeline import BatchguardError, UsageError
from pipeline.options import ValidationOptions


def test_defaults():
    o = ValidationOptions()
    assert (o.label, o.batch_size, o.sample_size) == (None, 65_536, 100_000)
    assert (o.near_constant_threshold, o.min_class_share, o.max_bad_rows) == (0.99, 0.05, None)
    assert (o.outlier_method, o.outlier_threshold, o.strict) == ("auto", None, False)
    assert (o.outlier_k, o.quarantine_outliers, o.joint_score) == (3.0, "gross", "combined")
    assert ValidationOptions(outlier_method="iqr").outlier_k == 5.0
    assert (o.severities, tuple(o.not_null)) == ({}, ())


#: a bad setting, and the exact error it gives
BAD = [
    (
        {"outlier_method": "zscore"},
        "outlier_method should be one of auto, iqr, mad, none, but got outlier_method='zscore'",
    ),
    (
        {"joint_score": "isolation"},
        "joint_score should be one of combined, distance, but got joint_score='isolation'",
    ),
    (
        {"near_constant_threshold": 1.5},
        "near_constant_threshold should be between 0 and 1, but got near_constant_threshold=1.5",
    ),
    (
        {"min_class_share": -0.1},
        "min_class_share should be between 0 and 1, but got min_class_share=-0.1",
    ),
    (
        {"max_bad_rows": 2},
        "max_bad_rows should be a fraction between 0 and 1, but got max_bad_rows=2",
    ),
    ({"outlier_threshold": 0}, "outlier_threshold should be positive, but got 0"),
    ({"outlier_threshold": -1.0}, "outlier_threshold should be positive, but got -1.0"),
    ({"batch_size": 0}, "batch_size should be a positive integer value, but got batch_size=0"),
    (
        {"batch_size": 1.5},
        "batch_size should be a positive integer value, but got batch_size=1.5",
    ),
    (
        {"batch_size": True},
        "batch_size should be a positive integer value, but got batch_size=True",
    ),
    (
        {"sample_size": -5},
        "sample_size should be a positive integer value, but got sample_size=-5",
    ),
    (
        {"severities": {"nan": "fatal"}},
        "severity of 'nan' should be error, warning or off, but got 'fatal'",
    ),
]


def _id(setting: dict) -> str:
    return ",".join(f"{k}={v!r}" for k, v in setting.items())


@pytest.mark.parametrize(("setting", "message"), BAD, ids=[_id(s) for s, _ in BAD])
def test_bad_settings_are_usage_errors_naming_the_setting(setting, message):
    with pytest.raises(UsageError) as err:
        ValidationOptions(**setting)
    assert str(err.value) == message
    assert isinstance(err.value, BatchguardError)  # the CLI turns it into exit 2


@pytest.mark.parametrize(
    "setting",
    [
        {"near_constant_threshold": 0.0},
        {"near_constant_threshold": 1.0},
        {"min_class_share": 0.0},
        {"max_bad_rows": 0.0},
        {"max_bad_rows": 1.0},
        {"outlier_method": "none"},
        {"outlier_threshold": 1e-9},
        {"batch_size": 1},
        {"severities": {"outlier": "off", "near_constant": "error", "nan": "warning"}},
    ],
    ids=_id,
)
def test_boundary_settings_are_accepted(setting):
    options = ValidationOptions(**setting)
    name, value = next(iter(setting.items()))
    assert getattr(options, name) == value


def test_from_kwargs_builds_the_same_options():
    kwargs = {"label": "y", "outlier_method": "mad", "outlier_threshold": 10.0, "strict": True}
    assert ValidationOptions.from_kwargs(**kwargs) == ValidationOptions(**kwargs)


def test_from_kwargs_names_an_unknown_key_and_lists_the_known_ones():
    known = ", ".join(sorted(f.name for f in fields(ValidationOptions)))
    with pytest.raises(UsageError) as err:
        ValidationOptions.from_kwargs(treshold=3, label="y")
    assert str(err.value) == f"unknown option 'treshold'; known options are {known}"
    # several unknown keys: the first in sorted order is named
    with pytest.raises(UsageError, match="^unknown option 'alpha';"):
        ValidationOptions.from_kwargs(zeta=1, alpha=2)


def test_from_kwargs_checks_values_too():
    with pytest.raises(UsageError, match="outlier_method should be one of"):
        ValidationOptions.from_kwargs(outlier_method="zscore")
