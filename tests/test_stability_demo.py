"""The stability demo, short: a plain DataLoader goes NaN, make_loader + guard converges."""

from __future__ import annotations

import math
import sys

import pytest

from tests.conftest import ROOT

# It trains three models: the largest case of the suite.
pytestmark = pytest.mark.slow

sys.path.insert(0, str(ROOT / "examples"))

from stability_demo import run_demo  # noqa: E402


def test_plain_loader_goes_nan_and_batchguard_converges(tmp_path):
    runs = run_demo(rows=8000, epochs=2, workdir=str(tmp_path))
    reference = runs["reference"].eval_loss
    assert math.isfinite(reference)
    plain = runs["plain"]
    assert not math.isfinite(plain.eval_loss) or plain.eval_loss > 10 * reference
    assert any(not math.isfinite(v) for v in plain.losses)
    guarded = runs["guarded"].eval_loss
    assert abs(guarded - reference) <= 0.05 * reference, (guarded, reference)
    assert all(math.isfinite(v) for v in runs["guarded"].losses)
