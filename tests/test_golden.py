"""``validate``'s outputs on the sample data are the golden ones, exactly.

Every stdout format, the exit codes and verdicts, the job summary, the HTML
report, and the quarantine and clean files are compared with
``tests/golden/<case>/``. An intended change of output (a bug fix, a reworded
message) regenerates them deliberately with ``python tests/golden/regenerate.py``
and says in its commit which outputs changed and why.
"""

from __future__ import annotations

import difflib

import pytest

from tests.golden.regenerate import GOLDEN, Case, cases, outputs, stored

#: lines of diff shown per differing file
_DIFF_LINES = 60


def _diff(name: str, want: str, got: str) -> str:
    lines = list(
        difflib.unified_diff(
            want.splitlines(keepends=True),
            got.splitlines(keepends=True),
            fromfile=f"golden/{name}",
            tofile=f"now/{name}",
            n=1,
        )
    )
    cut = len(lines) - _DIFF_LINES
    shown = "".join(lines[:_DIFF_LINES])
    return shown + (f"... ({cut} more diff lines)\n" if cut > 0 else "")


@pytest.mark.parametrize("case", cases(), ids=lambda case: case.name)
def test_outputs_match_the_goldens(case: Case, tmp_path):
    got = outputs(case, tmp_path)
    want = dict(stored(case))
    problems = []
    for name in sorted(set(want) - set(got)):
        problems.append(f"golden/{name} is no longer written\n")
    for name in sorted(set(got) - set(want)):
        problems.append(f"now/{name} is new: it has no golden file\n")
    for name in sorted(set(want) & set(got)):
        if want[name] != got[name]:
            problems.append(_diff(f"{case.name}/{name}", want[name], got[name]))
    assert not problems, (
        f"validate's outputs on {case.data} {' '.join(case.how)} differ from "
        f"{GOLDEN.name}/{case.name}/. If the change is intended, run "
        "`python tests/golden/regenerate.py` and say why in the commit.\n\n" + "\n".join(problems)
    )


def test_every_case_has_goldens():
    assert sorted(p.name for p in GOLDEN.iterdir() if p.is_dir() and p.name != "__pycache__") == (
        sorted(case.name for case in cases())
    )
