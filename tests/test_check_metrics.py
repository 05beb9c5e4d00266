"""scripts/check_metrics.py: the regenerated metrics against the committed ones, and its platform rule."""
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("check_metrics", REPO / "scripts" / "check_metrics.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


OLD = {"C1": {"verdict": "holds", "summary": "median 1.12", "measured": {"gd": {"r": {"in_band": 0.40,
                                                                                      "edge": True}}}},
       "C3": {"verdict": "holds", "measured": {"R": 0.50}}}


def _new(**change):
    import copy

    new = copy.deepcopy(OLD)
    for path, v in change.items():
        *keys, last = path.split("__")
        d = new
        for k in keys:
            d = d[k]
        d[last] = v
    return new


def _diffs(new, loose):
    cm = _module()
    diffs: list = []
    cm.compare(OLD, new, "metrics/claims.json", diffs, 0.02, 1e-6, 0.1, loose)
    return [p for p, _, _ in diffs]


def test_on_the_same_platform_every_number_counts():
    assert _diffs(_new(C1__measured__gd__r__in_band=0.34), None) == ["metrics/claims.json.C1.measured.gd.r.in_band"]
    assert _diffs(_new(C1__summary="median 1.22"), None) == ["metrics/claims.json.C1.summary"]


def test_on_another_platform_gd_at_the_edge_is_judged_on_verdicts_only():
    loose: list = []
    assert _diffs(_new(C1__measured__gd__r__in_band=0.34, C1__summary="median 1.22"), loose) == []
    assert {p for p, _, _ in loose} == {"metrics/claims.json.C1.measured.gd.r.in_band", "metrics/claims.json.C1.summary"}
    # a verdict, a boolean, or a number outside the chaotic subtrees still fails
    assert _diffs(_new(C1__verdict="partly"), []) == ["metrics/claims.json.C1.verdict"]
    assert _diffs(_new(C1__measured__gd__r__edge=False), []) == ["metrics/claims.json.C1.measured.gd.r.edge"]
    assert _diffs(_new(C3__measured__R=0.6), []) == ["metrics/claims.json.C3.measured.R"]
