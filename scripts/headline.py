#!/usr/bin/env python
"""Before/after table of a profile's headline numbers (verdicts, medians, orders, R, β, R², shares, certificates).

Usage::

    python scripts/headline.py --root . --before-rev 4bad927 [--markdown]
    python scripts/headline.py --root . profiles/c2-edge profiles/extended --before-rev 4bad927 --markdown
    python scripts/headline.py --root profiles/extended --before-rev 4bad927 --after-dir /tmp/clone

*Before* is the profile's ``metrics/claims.json`` (and ``metrics/02_flow_accuracy.json``, ``metrics/powerlaw.json``)
as committed at ``--before-rev`` (``git show REV:<path from the repository root>``); *after* is the working tree,
or the same paths under another checkout root (``--after-dir``) or revision (``--after-rev``).

Every row is (quantity, before, after, change): a number is printed to 3 significant digits and its change as a
relative % ("0%" when equal); a verdict, version, count "k/n" or other text changes by "=" or "→"; a range
"lo … hi" (min and max over runs, pairs or seeds, where there are more than two; two or fewer are listed one row
each) changes by "lo % / hi %"; "–" where a side lacks the number. The rows come from extractors, one per claim
and criteria version (``EXTRACTORS``), each reading the claim's ``measured`` dict as its judge in
``eoslib/claims/<claim>.py`` writes it; earlier criteria versions give their verdict (with ``--earlier`` also their
numbers). ``certificates`` (a judged row's ``checked``/``unconverged``/``corrections``) are summed over the claims'
latest rows: claims that read the same stored tables each count them.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

DASH = "–"
#: at most this many runs (pairs, seeds) are listed one row each; more are summarised as a range min … max
FEW = 2
#: the files read per profile, relative to the profile's root
FILES = ("metrics/claims.json", "metrics/02_flow_accuracy.json", "metrics/powerlaw.json")


# ---------------------------------------------------------------------------------------------------- values
@dataclass(frozen=True)
class Range:
    """min … max of several numbers."""

    lo: float
    hi: float
    n: int  # how many values (finite or not) the range is over


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt_num(x: float) -> str:
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    s = f"{x:#.3g}"  # 3 significant digits, trailing zeros kept (2.20), no trailing point (592)
    mant, e, exp = s.partition("e")
    return (mant.rstrip(".") + e + exp).replace("-", "−")


def fmt(v) -> str:
    if v is None:
        return DASH
    if isinstance(v, Range):
        return (fmt_num(v.lo) if v.lo == v.hi else f"{fmt_num(v.lo)} … {fmt_num(v.hi)}") + f" ({v.n})"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if _num(v):
        return fmt_num(v)
    if isinstance(v, float):  # nan, inf
        return str(v)
    return str(v)


def rel_change(old: float, new: float) -> str:
    if old == new:
        return "0%"
    if old == 0:
        return f"{'+' if new > 0 else '−'}∞ (was 0)"
    p = 100 * (new - old) / abs(old)
    return f"{p:+.3g}%".replace("-", "−")


def change(old, new) -> str:
    if old is None and new is None:
        return "="
    if old is None or new is None:
        return DASH if not isinstance(old if new is None else new, str) else "→"
    if isinstance(old, Range) or isinstance(new, Range):
        lo_o, hi_o = (old.lo, old.hi) if isinstance(old, Range) else (old, old)
        lo_n, hi_n = (new.lo, new.hi) if isinstance(new, Range) else (new, new)
        if not all(_num(x) for x in (lo_o, hi_o, lo_n, hi_n)):
            return "=" if (lo_o, hi_o) == (lo_n, hi_n) else "→"
        a, b = rel_change(lo_o, lo_n), rel_change(hi_o, hi_n)
        out = "0%" if a == b == "0%" else f"{a} / {b}"
        n_o, n_n = (getattr(x, "n", 1) for x in (old, new))
        return out if n_o == n_n else f"{out} (n {n_o} → {n_n})"
    if _num(old) and _num(new):
        return rel_change(old, new)
    return "=" if old == new else "→"


# ---------------------------------------------------------------------------------------------------- helpers
Row = tuple[str, object]


def get(d, *path, default=None):
    """d[path[0]][path[1]]…, or ``default`` where any step is missing."""
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def spread(label: str, items: dict[str, object], few: int = FEW) -> list[Row]:
    """≤ ``few`` items: one row each (``label [key]``); more: one row ``label``, the range min … max of the finite
    numbers among them (None when there are none)."""
    if not items:
        return []
    if len(items) <= few:
        return [(f"{label} [{k}]", v if (_num(v) or v is None or isinstance(v, str)) else None) for k, v in items.items()]
    nums = [v for v in items.values() if _num(v)]
    return [(label, Range(min(nums), max(nums), len(items)) if nums else None)]


def count_ok(values: Iterable) -> str | None:
    """"k/n": k true among the n that are not None; None when n = 0."""
    vals = [v for v in values if v is not None]
    return f"{sum(bool(v) for v in vals)}/{len(vals)}" if vals else None


def strip_prefix(key: str, prefix: str) -> str:
    return key[len(prefix) + 1:] if key.startswith(prefix + "/") else key


def by_setting(d: dict) -> dict[str, dict]:
    """Group a dict keyed ``setting/…`` by its first component (a value's ``setting`` field where present)."""
    out: dict[str, dict] = {}
    for k, v in (d or {}).items():
        s = (v.get("setting") if isinstance(v, dict) else None) or k.split("/", 1)[0]
        out.setdefault(s, {})[strip_prefix(k, s)] = v
    return out


# ---------------------------------------------------------------------------------------------------- extractors
# Each extractor: (row of claims.json, the profile's other files) -> [(label without the claim prefix, value)].
Extractor = Callable[[dict, dict], list[Row]]


def c1(row: dict, files: dict) -> list[Row]:
    """C1 (v1 and v2): per setting, the GD runs at the edge (not controls): how many pass, the median λη/2 after
    the first crossing, the fraction of those steps in the band, the peak λη/2; the controls; the flows'
    sharpening factor (``measured.gd.<run>.*``, ``measured.flow.<run>.factor``)."""
    m = row.get("measured") or {}
    out: list[Row] = []
    flows = by_setting(m.get("flow") or {})
    for s, runs in by_setting(m.get("gd") or {}).items():
        edge = {k: v for k, v in runs.items() if not v.get("control")}
        ctrl = {k: v for k, v in runs.items() if v.get("control")}
        if edge:
            out.append((f"{s}: edge runs passing", count_ok(v.get("ok") for v in edge.values())))
            out += spread(f"{s}: median λη/2 after crossing", {k: v.get("median_ratio_at_eos") for k, v in edge.items()})
            out += spread(f"{s}: steps in band (fraction)", {k: v.get("in_band_fraction") for k, v in edge.items()})
            out += spread(f"{s}: peak λη/2", {k: v.get("max_ratio") for k, v in edge.items()})
        if ctrl:
            out.append((f"{s}: controls below the edge", count_ok(v.get("ok") for v in ctrl.values())))
            peaks = [v.get("max_ratio") for v in ctrl.values() if _num(v.get("max_ratio"))]
            out.append((f"{s}: controls' peak λη/2, max", max(peaks) if peaks else None))
        out += spread(f"{s}: flow sharpening ×", {k: v.get("factor") for k, v in flows.get(s, {}).items()})
    return out


def c2_v1(row: dict, files: dict) -> list[Row]:
    """C2 v1 (the compare run): exponential Euler's and each GD step size's max relative distance to the reference
    flow, and GD's factor over EE (``measured.ee_max_rel_distance``, ``gd_max_rel_distance``, ``advantage``)."""
    m = row.get("measured") or {}
    out: list[Row] = [("EE max rel. distance", m.get("ee_max_rel_distance"))]
    for k, v in (m.get("gd_max_rel_distance") or {}).items():
        out.append((f"GD {k.replace('gd_lr', 'η=')} max rel. distance", v))
        out.append((f"GD {k.replace('gd_lr', 'η=')} distance / EE's", get(m, "advantage", k)))
    return out


def c2_v2(row: dict, files: dict) -> list[Row]:
    """C2 v2 (the cost runs, per seed): EE's observed order and error at its finest Δt_max, GD's and RKC's
    observed orders (GD's from ``02_flow_accuracy.json`` ``orders``), RKC's error at its tightest rtol, the
    flow's λ_max, and per GD step size its max relative distance and its factor over EE at equal work
    (``measured.<run>.ee_order``, ``ee_finest``, ``rkc_order``, ``rkc.*``, ``flow_lam_max``, ``gd.<η>.*``)."""
    m = row.get("measured") or {}
    orders = get(files.get("metrics/02_flow_accuracy.json") or {}, "orders") or {}
    out: list[Row] = [("runs where EE converges", count_ok(v.get("converges") for v in m.values())),
                      ("runs where GD at the edge is ≥ 3× further", count_ok(v.get("beats_gd_at_edge")
                                                                             for v in m.values()))]
    out += spread("EE order", {k: v.get("ee_order") for k, v in m.items()})
    out += spread("EE error at finest Δt_max", {k: v.get("ee_finest") for k, v in m.items()})
    if any(get(orders, k, "gd") is not None for k in m):
        out += spread("GD order", {k: get(orders, k, "gd") for k in m})
    if any(v.get("rkc") for v in m.values()):
        out += spread("RKC order", {k: v.get("rkc_order") for k, v in m.items()})

        def tightest(v: dict):
            r = sorted((v.get("rkc") or {}).values(), key=lambda x: x.get("step_size") or 0)
            return r[0].get("max_rel_distance") if r else None
        out += spread("RKC error at its tightest rtol", {k: tightest(v) for k, v in m.items()})
    out += spread("flow λ_max", {k: v.get("flow_lam_max") for k, v in m.items()})
    etas = sorted({g.get("eta") for v in m.values() for g in (v.get("gd") or {}).values() if _num(g.get("eta"))})
    edge = sorted({g["eta"] for v in m.values() for g in (v.get("gd") or {}).values() if g.get("at_edge")})
    out.append(("GD η at the edge (2/η < λ_max)", ", ".join(f"{e:g}" for e in edge) or "none"))
    for eta in etas:
        def pick(field: str) -> dict:
            return {k: next((g.get(field) for g in (v.get("gd") or {}).values() if g.get("eta") == eta), None)
                    for k, v in m.items()}
        out += spread(f"GD η={eta:g} max rel. distance", pick("max_rel_distance"))
        out += spread(f"GD η={eta:g} distance / EE's at equal work", pick("advantage"))
    return out


def c3_v1(row: dict, files: dict) -> list[Row]:
    """C3 v1 (co-movement): per flow run Spearman ρ(ᾱ, λ_max) and ᾱ's growth; the across-sweep ρ at the
    threshold, reported (``measured.runs.<run>.*``, ``measured.across_sweep_spearman_at_threshold``)."""
    runs = get(row, "measured", "runs") or {}
    return ([("runs passing", count_ok(v.get("ok") for v in runs.values()))]
            + spread("ρ(ᾱ, λ_max) along the flow", {k: v.get("spearman_alpha_sharpness") for k, v in runs.items()})
            + spread("ᾱ growth ×", {k: v.get("alpha_growth") for k, v in runs.items()})
            + spread("ρ across the sweep at threshold", get(row, "measured", "across_sweep_spearman_at_threshold")
                     or {}))


def c3_causal(row: dict, files: dict) -> list[Row]:
    """C3 v2/v3 (intervention): per (seed, α*) pair the share R of the free flow's log-sharpening kept with ᾱ held
    and with the layer norms held (the placebo), at equal loss and at equal flow time; the free flow's alignment
    share of Δlog‖P₁‖ (``measured.arms.<pair>.{alpha,norms}.{R,R_time}``, ``measured.decomposition.<seed>``)."""
    arms = get(row, "measured", "arms") or {}
    judged = {k: v for k, v in arms.items() if v.get("measurable", True)}
    out: list[Row] = [("pairs passing", count_ok(v.get("ok") for v in arms.values()))]
    if "not_measurable" in (row.get("measured") or {}):
        out.append(("pairs not measurable", len(row["measured"]["not_measurable"] or [])))
    out.append(("placebo arms reaching the loss level",
                f"{sum(get(v, 'norms', 'R') is not None for v in judged.values())}/{len(judged)}" if judged else None))
    for hold, name in (("alpha", "ᾱ held"), ("norms", "norms held")):
        out += spread(f"R, {name}", {k: get(v, hold, "R") for k, v in judged.items()})
        out += spread(f"R at equal flow time, {name}", {k: get(v, hold, "R_time") for k, v in judged.items()})
    out += spread("free flow: alignment share of Δlog‖P₁‖",
                  {k: v.get("alignment_share") for k, v in (get(row, "measured", "decomposition") or {}).items()})
    return out


def c3_v4(row: dict, files: dict) -> list[Row]:
    """C3 v4 (five arms): unit statuses; per arm R at equal loss, at the peak and at equal time and the removed
    fraction at equal loss (``measured.units.<unit>.arms.<arm>.*``); the horse race (pooled ΔR²) and the Taylor
    model's sharpening (``measured.horse_race.pooled``, ``measured.mechanism``)."""
    m = row.get("measured") or {}
    units = m.get("units") or {}
    out: list[Row] = [("units holding", count_ok(u.get("ok") for u in units.values() if u.get("ok") is not None)),
                      ("units test invalid", len(m.get("test_invalid") or [])),
                      ("units not measurable", len(m.get("not_measurable") or []))]
    arms = sorted({h for u in units.values() for h in u.get("arms", {})})
    for h in arms:
        for b, name in (("R_loss", "R"), ("R_peak", "R at the peak"), ("R_time", "R at equal flow time"),
                        ("removed_loss", "removed fraction")):
            out += spread(f"{name}, {h}", {k: get(u, "arms", h, b) for k, u in units.items()})
    for b, v in ((m.get("horse_race") or {}).get("pooled") or {}).items():
        out.append((f"horse race ΔR² beyond {b}", v.get("delta_r2")))
    out += spread("Taylor model sharpening ×", {k: v.get("sharpening") for k, v in (m.get("mechanism") or {}).items()})
    out += spread("free flow: alignment share of Δlog‖P₁‖",
                  {k: v.get("alignment_share") for k, v in (m.get("decomposition") or {}).items()})
    return out


def _c4_fit_rows(s: str, f: dict) -> list[Row]:
    out: list[Row] = [(f"{s}: β", f.get("beta"))]
    if "r2_means" in f:
        out += [(f"{s}: R² on per-N means", f.get("r2_means")), (f"{s}: R² pooled", f.get("r2_pooled")),
                (f"{s}: ΔAICc (power law − saturating)", f.get("delta_aicc"))]
    else:
        out.append((f"{s}: R² pooled", f.get("r2")))
    return out


def c4(row: dict, files: dict) -> list[Row]:
    """C4 (v1: pooled fit; v2: seed-aware): per setting the primary measure's β and R² (v2: on per-N means and
    pooled, and ΔAICc) (``measured.settings.<setting>.*``); how many measure × end point pairs meet the criterion
    everywhere."""
    m = row.get("measured") or {}
    out: list[Row] = []
    for s, f in (m.get("settings") or {}).items():
        out += _c4_fit_rows(s, f)
    for key in ("measures_meeting_criterion_everywhere", "measures_with_r2_above_min_everywhere"):
        if key in m:
            out.append(("measures × end points meeting the criterion everywhere", len(m[key] or [])))
    return out


def powerlaw_unjudged(files: dict) -> list[Row]:
    """Where the ledger has no C4 row: the primary fit of ``metrics/powerlaw.json`` (β, pooled R²) per setting,
    where one was fitted."""
    pl = files.get("metrics/powerlaw.json") or {}
    prim = pl.get("primary") or {}
    out: list[Row] = []
    for s, byep in (pl.get("fits") or {}).items():
        f = get(byep, prim.get("endpoint"), prim.get("measure")) or {}
        if "beta" in f:
            out += [(f"power law (not judged) {s}: β", f.get("beta")), (f"power law (not judged) {s}: R² pooled",
                                                                       f.get("r2"))]
    return out


def split(row: dict, files: dict) -> list[Row]:
    """split: per run the median λ_max(G)/λ_max(∇²L) and λ_max(H)/λ_max(∇²L) over the sharpened part
    (``measured.<run>.median_ggn_over_hess``, ``median_res_over_hess``)."""
    m = row.get("measured") or {}
    return ([("runs passing", count_ok(v.get("ok") for v in m.values()))]
            + spread("λ_max(G)/λ_max(∇²L), median", {k: v.get("median_ggn_over_hess") for k, v in m.items()})
            + spread("λ_max(H)/λ_max(∇²L), median", {k: v.get("median_res_over_hess") for k, v in m.items()}))


def layers(row: dict, files: dict) -> list[Row]:
    """layers (v1: top eigenvector of G; v2: top-q eigenspace): layer 1's mean share and in how many runs it is
    the largest (``measured.<run>.share_1``, ``ok``)."""
    m = row.get("measured") or {}
    col = "top-q eigenspace" if row.get("criteria_version", 1) >= 2 else "top eigenvector"
    return ([("runs with layer 1 largest", count_ok(v.get("ok") for v in m.values()))]
            + spread(f"layer 1's share of G's {col}", {k: v.get("share_1") for k, v in m.items()}))


def sensitivity(row: dict, files: dict) -> list[Row]:
    """sensitivity: per variant ρ(ᾱ, λ_max) and λ_max's sharpening; ᾱ's growth and layer 1's share as ranges
    (``measured.<variant/seed>.spearman``, ``sharpening``, ``alpha_growth``, ``share_1``, ``c3_ok``, ``layers_ok``)."""
    m = row.get("measured") or {}
    inf = 10 ** 9
    return ([("variants passing C3 (co-movement)", count_ok(v.get("c3_ok") for v in m.values())),
             ("variants with layer 1 largest", count_ok(v.get("layers_ok") for v in m.values()))]
            + spread("ρ(ᾱ, λ_max)", {k: v.get("spearman") for k, v in m.items()}, few=inf)
            + spread("λ_max sharpening ×", {k: v.get("sharpening") for k, v in m.items()}, few=inf)
            + spread("ᾱ growth ×", {k: v.get("alpha_growth") for k, v in m.items()})
            + spread("layer 1's share", {k: v.get("share_1") for k, v in m.items()}))


def agreement(row: dict, files: dict) -> list[Row]:
    """agreement: per measure the largest |a − b|/|b| over settings (``measured.settings.<s>.<m>.max_rel_diff``)."""
    sets = get(row, "measured", "settings") or {}
    measures = list(dict.fromkeys(m for ms in sets.values() for m in ms))
    out: list[Row] = [("end points compared", get(row, "measured", "pairs")),
                      ("settings × measures within tolerance",
                       count_ok(v.get("ok") for ms in sets.values() for v in ms.values()))]
    for mname in measures:
        d = [get(ms, mname, "max_rel_diff") for ms in sets.values()]
        d = [x for x in d if _num(x)]
        out.append((f"{mname}: max rel. difference", max(d) if d else None))
    return out


#: claim → {criteria version (None: any) → extractor}
EXTRACTORS: dict[str, dict[int | None, Extractor]] = {
    "C1": {None: c1},
    "C2": {1: c2_v1, None: c2_v2},
    "C3": {1: c3_v1, 4: c3_v4, None: c3_causal},
    "C4": {None: c4},
    "split": {None: split},
    "layers": {None: layers},
    "sensitivity": {None: sensitivity},
    "agreement": {None: agreement},
}


def extract(claim: str, row: dict, files: dict) -> list[Row]:
    ex = EXTRACTORS.get(claim, {})
    f = ex.get(row.get("criteria_version"), ex.get(None))
    if f is None or not row.get("measured"):
        return []
    try:
        return f(row, files)
    except Exception as e:  # a reshaped measured dict must not hide the other rows
        return [(f"(could not read: {type(e).__name__}: {e})", None)]


def verdict(row: dict | None) -> str | None:
    if not row:
        return None
    v = row.get("verdict")
    if row.get("verdict_if_certified"):
        v = f"{v} (would be {row['verdict_if_certified']})"
    return v


def version(row: dict | None) -> str | None:
    v = (row or {}).get("criteria_version")
    return None if v is None else f"v{v}"


def headline(files: dict, earlier_numbers: bool = False, per_claim_certificates: bool = False) -> list[Row]:
    """Every headline row of one side (before or after) of a profile: verdicts, numbers, certificates."""
    claims = files.get("metrics/claims.json") or {}
    rows: list[Row] = []
    for k, r in claims.items():
        rows += [(f"{k} verdict", verdict(r)), (f"{k} criteria version", version(r))]
        for ev, e in (r.get("earlier") or {}).items():
            rows.append((f"{k} {ev} verdict (earlier criteria)", verdict(e)))
    for k, r in claims.items():
        rows += [(f"{k} {lab}", v) for lab, v in extract(k, r, files)]
        if earlier_numbers:
            for ev, e in (r.get("earlier") or {}).items():
                rows += [(f"{k} {ev} {lab}", v) for lab, v in extract(k, e, files)]
    if "C4" not in claims:
        rows += powerlaw_unjudged(files)
    certs = {k: r["certificates"] for k, r in claims.items() if isinstance(r.get("certificates"), dict)}
    for field, name in (("checked", "certified solves checked"), ("unconverged", "unconverged solves"),
                        ("corrections", "warm→cold corrections")):
        vals = [c.get(field) for c in certs.values() if _num(c.get(field))]
        rows.append((f"certificates: {name}, Σ over claims", sum(vals) if vals else None))
        if per_claim_certificates:
            rows += [(f"certificates: {name}, {k}", c.get(field)) for k, c in certs.items()]
    return rows


# ---------------------------------------------------------------------------------------------------- reading
def toplevel(path: Path) -> Path:
    r = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"headline: {path} is not inside a git repository: {r.stderr.strip()}")
    return Path(r.stdout.strip())


def read_rev(top: Path, rev: str, rel: str) -> dict | None:
    """``rel`` (from the repository root) at ``rev``, parsed; None when absent there."""
    r = subprocess.run(["git", "show", f"{rev}:{rel}"], cwd=top, capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else None


def read_dir(base: Path, rel: str) -> dict | None:
    f = base / rel
    return json.loads(f.read_text()) if f.exists() else None


def check_rev(top: Path, rev: str) -> None:
    r = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=top,
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"headline: unknown git revision {rev!r}")


def profile_files(read: Callable[[str], dict | None], prof: str) -> dict:
    """{file (relative to the profile): parsed JSON or None} of one profile, read by ``read(path from the
    repository root)``."""
    return {f: read(f if prof in ("", ".") else f"{prof}/{f}") for f in FILES}


# ---------------------------------------------------------------------------------------------------- table
def merge(before: list[Row], after: list[Row]) -> list[tuple[str, object, object]]:
    """Rows of both sides matched by label: after's order, a before-only row placed after its predecessor."""
    b, a = dict(before), dict(after)
    order = [lab for lab, _ in after]
    seen = set(order)
    prev = None
    for lab, _ in before:
        if lab not in seen:
            order.insert(order.index(prev) + 1 if prev in order else len(order), lab)
            seen.add(lab)
        prev = lab
    return [(lab, b.get(lab), a.get(lab)) for lab in order]


def table(rows: list[tuple[str, object, object]]) -> list[tuple[str, str, str, str]]:
    return [(lab, fmt(o), fmt(n), change(o, n)) for lab, o, n in rows]


def render(cells: list[tuple[str, str, str, str]], header: tuple[str, str, str, str], markdown: bool) -> str:
    if markdown:
        esc = lambda s: s.replace("|", "\\|")  # noqa: E731
        return "\n".join([f"| {' | '.join(header)} |", "|---|---|---|---|"]
                         + [f"| {' | '.join(esc(c) for c in row)} |" for row in cells])
    w = [max(len(r[i]) for r in [header, *cells]) for i in range(4)]
    line = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip()  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * x for x in w)] + [line(r) for r in cells])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", nargs="+", default=["."], help="profile root(s): '.', profiles/c2-edge, …")
    ap.add_argument("--before-rev", required=True, help="git revision holding the 'before' metrics")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--after-dir", type=Path, help="read 'after' from this checkout root instead of the working tree")
    g.add_argument("--after-rev", help="read 'after' from this git revision instead of the working tree")
    ap.add_argument("--markdown", action="store_true", help="a Markdown table (for README.md)")
    ap.add_argument("--earlier", action="store_true", help="also the numbers of earlier criteria versions")
    ap.add_argument("--per-claim-certificates", action="store_true", help="certificates per claim, not only Σ")
    a = ap.parse_args(argv)
    out = []
    for root in a.root:
        rp = Path(root).resolve()
        top = toplevel(rp if rp.is_dir() else Path.cwd())
        prof = os.path.relpath(rp, top)
        if prof.startswith(".."):
            sys.exit(f"headline: {root} is outside the repository {top}")
        check_rev(top, a.before_rev)
        before = profile_files(lambda rel: read_rev(top, a.before_rev, rel), prof)
        if a.after_rev:
            check_rev(top, a.after_rev)
            after = profile_files(lambda rel: read_rev(top, a.after_rev, rel), prof)
            after_name = a.after_rev
        else:
            base = a.after_dir.resolve() if a.after_dir else top
            after = profile_files(lambda rel: read_dir(base, rel), prof)
            after_name = str(a.after_dir) if a.after_dir else "working tree"
        if before["metrics/claims.json"] is None and after["metrics/claims.json"] is None:
            print(f"headline: no metrics/claims.json for profile {prof!r} on either side", file=sys.stderr)
        rows = merge(headline(before, a.earlier, a.per_claim_certificates),
                     headline(after, a.earlier, a.per_claim_certificates))
        name = "default (.)" if prof == "." else prof
        title = f"profile {name}: before {a.before_rev}, after {after_name}"
        head = (f"**{title}**" if a.markdown else title) + "\n"
        note = ("\nCertificates Σ over claims: stored tables read by several claims count once per claim. "
                "Ranges lo … hi are min … max over runs, pairs or seeds (their count in parentheses).")
        out.append(head + "\n" + render(table(rows), ("quantity", "before", "after", "change"), a.markdown) + "\n"
                   + note)
    print("\n\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
