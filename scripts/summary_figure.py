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
PROFILES = {"default": REPO, "extended": REPO / "profiles/extended", "mse": REPO / "profiles/mse",
            "authors": REPO / "profiles/authors"}
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


def panel_c3(ax) -> None:
    arms = metrics(REPO, "claims").get("C3", {}).get("measured", {}).get("arms", {})
    keys = sorted(arms)
    for i, k in enumerate(keys):
        a = arms[k]
        ax.plot(a["alpha"]["R"], i, "o", color="C3", label="ᾱ held, equal loss" if i == 0 else None)
        if a["norms"].get("R_time") is not None:
            ax.plot(a["norms"]["R_time"], i, "s", mfc="none", color="C2",
                    label="norms held, equal time" if i == 0 else None)
    ax.axvline(0.5, ls=":", color="k")
    ax.set_yticks(range(len(keys)), keys, fontsize=6)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("share of log-sharpening kept (R)")
    ax.legend(fontsize=6, loc="lower left")
    ax.set_title("(b) C3 intervention (default, digits CE)", fontsize=9)


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
