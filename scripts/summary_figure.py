"""The README's summary figure, from the committed metrics of every profile (no runs needed):

    python scripts/summary_figure.py [--out figures/summary.png]

(a) C1: GD's median λ_max·η/2 after it reaches the edge, per run of the default profile (band 0.8–1.25);
(b) C3: the share of the free flow's log-sharpening kept when ᾱ is held (and, at equal flow time, when the layer
    norms are held instead), per seed and α*;
(c) C4: β (mean of the per-seed slopes, 95 % t-interval) of ᾱ, the chain gain ‖P₁‖ and λ_max at the threshold in
    every setting of every profile with a sweep;
(d) the authors' regime (profiles/authors): λ_max along the flow at θ₀, its minimum and its maximum after that
    minimum, per N — the gate of C4 v3 (a rise ≥ 5× is needed at N ≥ 1024).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROFILES = {"default": REPO, "extended": REPO / "profiles/extended", "long-range": REPO / "profiles/long-range",
            "mse": REPO / "profiles/mse", "authors": REPO / "profiles/authors"}
MEASURES = {"alpha_mean": "ᾱ", "chain_gain": "‖P₁‖", "sharpness": "λ_max"}


def metrics(root: Path, name: str) -> dict:
    f = root / "metrics" / f"{name}.json"
    return json.loads(f.read_text()) if f.exists() else {}


def panel_c1(ax) -> None:
    gd = metrics(REPO, "claims").get("C1", {}).get("measured", {}).get("gd", {})
    runs = [(k, v) for k, v in gd.items() if v.get("median_ratio_at_eos") is not None]
    for i, (k, v) in enumerate(sorted(runs)):
        ax.plot(v["median_ratio_at_eos"], i, "o", color="C0" if "mse" in k else "C1")
    ax.axvspan(0.8, 1.25, color="0.9", zorder=0)
    ax.set_yticks(range(len(runs)), [k.replace("/", " ") for k, _ in sorted(runs)], fontsize=6)
    ax.set_xlabel("GD: median λ_max·η/2 at the edge")
    ax.set_title("(a) C1: GD sits near 2/η (band 0.8–1.25)", fontsize=9)


#: the C3 v4 arms shown in panel (b): colour, marker, label
ARMS3 = {"chain": ("C3", "P", "positive control (log‖P₁‖ held)"), "vector": ("C0", "v", "every āₖ, ᾱₖ held"),
         "alpha": ("C2", "o", "ᾱ held (scalar)"), "placebo": ("C7", "s", "matched placebo")}


def panel_c3(ax) -> None:
    units, prof = {}, None
    for prof in ("causal", "default"):
        root = REPO if prof == "default" else REPO / "profiles" / prof
        units = metrics(root, "claims").get("C3", {}).get("measured", {}).get("units") or {}
        if units:
            break
    if not units:
        ax.text(0.5, 0.5, "C3 v4 (five arms): not run yet", ha="center", va="center", transform=ax.transAxes)
        return
    keys = sorted(units)
    seen = set()
    for i, k in enumerate(keys):
        for h, (c, mk, lab) in ARMS3.items():
            v = units[k]["arms"].get(h) or {}
            r = v.get("R_loss") if v.get("R_loss") is not None else v.get("R_peak")
            if r is not None:
                ax.plot(r, i, mk, color=c, ms=4, mfc=c if v.get("R_loss") is not None else "none",
                        label=None if h in seen else lab)
                seen.add(h)
    for x, c in ((0.3, "C3"), (0.5, "C0"), (0.8, "C7")):
        ax.axvline(x, ls=":", color=c, lw=0.9)
    ax.set_yticks(range(len(keys)), keys, fontsize=5)
    ax.set_xlabel("share of the free flow's log-sharpening kept, R (hollow: at the peak, loss not reached)")
    ax.legend(fontsize=6, loc="best")
    ax.set_title(f"(b) C3 intervention ({prof}): R at equal loss per arm", fontsize=9)


def panel_c4(ax) -> None:
    rows = []
    for prof, root in PROFILES.items():
        for s, byep in metrics(root, "powerlaw").get("fits", {}).items():
            for m in MEASURES:
                a = (byep.get("threshold", {}).get(m) or {}).get("analysis")
                if a and a.get("beta_t") is not None:
                    rows.append((f"{prof}: {s}", m, a["beta_t"], *a["beta_t_interval"]))
    labels = sorted({r[0] for r in rows}, key=lambda x: [*PROFILES].index(x.split(":")[0]))
    for r in rows:
        j = list(MEASURES).index(r[1])
        y = labels.index(r[0]) + (j - 1) * 0.25
        lo, hi = (r[3], r[4]) if r[3] is not None and np.isfinite(r[3]) else (r[2], r[2])
        ax.errorbar(r[2], y, xerr=[[r[2] - lo], [hi - r[2]]], fmt="o", ms=3, color=f"C{j}",
                    label=MEASURES[r[1]] if labels.index(r[0]) == 0 else None)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_xscale("symlog", linthresh=0.05, linscale=0.5)
    ax.set_xticks([-0.1, 0, 0.05, 0.1, 0.5, 1, 2], ["−0.1", "0", "0.05", "0.1", "0.5", "1", "2"])
    ax.set_xlabel("β in v ∝ N^β at the loss threshold")
    ax.legend(fontsize=7)
    ax.set_title("(c) C4: what grows with N", fontsize=9)


def panel_authors(ax) -> None:
    sharp = metrics(PROFILES["authors"], "powerlaw").get("sharpening", {})
    if not sharp:
        ax.text(0.5, 0.5, "authors' regime: not run yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    for s, by in sharp.items():
        N = sorted(int(n) for n in by)
        for key, mk, lab in (("lam_init", "^", "at θ₀"), ("lam_min", "v", "minimum"), ("lam_max", "o", "max after min")):
            ax.plot(N, [by[str(n)][key] for n in N], mk + "-", label=lab)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("N")
    ax.set_ylabel("λ_max along the flow (median over seeds)")
    ax.legend(fontsize=7)
    ax.set_title("(d) authors' init (Xavier-√2, width 512): does it sharpen?", fontsize=9)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "figures" / "summary.png"))
    a = ap.parse_args(argv)
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    for f, ax in zip((panel_c1, panel_c3, panel_c4, panel_authors), axes.ravel()):
        f(ax)
    fig.suptitle("arXiv 2406.00127, reconstructed on CPU-scale settings (every number from the committed metrics)",
                 fontsize=11)
    fig.tight_layout()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
