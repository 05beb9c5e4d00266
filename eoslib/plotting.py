"""Figure style and output helpers for the notebooks (``notebooks/0*.ipynb``).

* :func:`set_style` — one seaborn/matplotlib theme for every figure;
* consistent colours: :func:`setting_palette` (one colour per setting of ``params.yaml``, in its order, so a
  setting has the same colour in every notebook), :func:`lr_palette` (GD step sizes), :data:`SOLVER_COLORS`
  (reference flow, exponential Euler), :func:`layer_palette`;
* labels with units and the loss convention: :data:`LABELS`, :func:`label`, :func:`sharpness_label`,
  :func:`loss_label`, :func:`setting_label`, :data:`LOSS_FULL`;
* :func:`save_figure` — ``figures/<name>.png`` (dpi 150, for the README) and ``figures/<name>.pdf``;
* :func:`write_metrics` — ``metrics/<name>.json`` (JSON-safe: NaN/inf → null), the numbers a notebook reports.

Nothing here computes results: the notebooks take their numbers from the ledger's ``metrics/claims.json``
(:func:`eoslib.results.claim_row`) and the run folders (:mod:`eoslib.results`), so a notebook and ``CLAIMS.md`` agree.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from .io import write_json
from .results import profile_root

class _FromRegistry(dict):
    """A read-only name → text view of a registry (so a new loss/dataset/solver needs no edit here)."""

    def __init__(self, get):
        super().__init__()
        self._get = get

    def __missing__(self, key):
        return self._get(key)

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default


def _loss_entry(name):
    from .losses import LOSSES

    return LOSSES.entry(name)


#: short loss tags for axis labels (the loss registry's labels, e.g. "CE", "MSE")
LOSS_SHORT = _FromRegistry(lambda n: _loss_entry(n).label)
#: the loss conventions (paper-notes §2), spelled out under a figure by :func:`loss_footnote`
LOSS_FULL = _FromRegistry(lambda n: _loss_entry(n).meta.get("convention", _loss_entry(n).label))


#: axis labels with units / definitions (mathtext)
LABELS = {
    "t": "flow time $t$",
    "t_gd": r"flow time $t = k\eta$",
    "step": "step $k$",
    "n": "dataset size $N$",
    "loss": "training loss $L(\\theta)$",
    "dt": r"step $\Delta t$",
    "sharpness": r"sharpness $\lambda_{\max}(\nabla^2 L)$",  # also a measure; the figure label is this one
    "hess_lam1": r"$\lambda_{\max}(\nabla^2 L)$",
    "ggn_lam1": r"$\lambda_{\max}(G)$",
    "res_lam1": r"$\lambda_{\max}(H)$",
    "eos_ratio": r"$\lambda_{\max}(\nabla^2 L)\,\eta\,/\,2$",
    "rel_dist": r"$\|\theta(t) - \theta_{\mathrm{ref}}(t)\|\ /\ \|\theta_{\mathrm{ref}}(t_{\mathrm{end}}) - \theta_0\|$",
    "share": r"share $\|w_k\|^2$ of $\lambda_{\max}(G)$",
    "afac": r"per-layer factor $a_k$ (mean)",
    "r2": r"$R^2$ of the log–log fit",
    "beta": r"exponent $\beta$",
}

def _solver_name(key: str) -> str:
    from .solvers import SOLVERS

    return "reference flow (high-accuracy ODE)" if key == "reference" else SOLVERS.label(key)


def _solver_color(key: str) -> str:
    from .solvers import SOLVERS

    if key == "reference":
        return "#000000"
    dark = sns.color_palette("dark", 10).as_hex()
    cols = [dark[i] for i in (0, 1, 2, 4, 9, 6, 8, 5, 3, 7)]  # blue, orange, green, purple, teal…: no red next to orange
    return cols[SOLVERS.names().index(key) % len(cols)] if key in SOLVERS else "#555555"


#: fixed colours and names of the solvers, from the solver registry (GD step sizes: :func:`lr_palette`)
SOLVER_COLORS = _FromRegistry(_solver_color)
SOLVER_NAMES = _FromRegistry(_solver_name)

_SETTING_COLORS = sns.color_palette("colorblind", 10)
_ACTIVATION_NAMES = {"elu": "ELU", "tanh": "tanh", "relu": "ReLU", "gelu": "GELU", "softplus": "softplus"}


def _dataset_label(name: str) -> str:
    from .data import DATASETS

    return DATASETS.label(name) if name in DATASETS else name


def set_style(context: str = "notebook") -> None:
    """The project's figure theme (seaborn whitegrid, colour-blind palette, readable sizes, tight saving)."""
    sns.set_theme(context=context, style="whitegrid", palette="colorblind", font_scale=0.85)
    mpl.rcParams.update({
        "figure.dpi": 100,
        "savefig.dpi": 150,
        "savefig.bbox": "tight",
        "axes.titlesize": "medium",
        "axes.titleweight": "bold",
        "legend.fontsize": "small",
        "legend.title_fontsize": "small",
        "legend.frameon": True,
        "legend.framealpha": 0.85,
        "lines.linewidth": 1.6,
        "axes.formatter.use_mathtext": True,
        "mathtext.fontset": "dejavusans",
        "pdf.fonttype": 42,
    })


# ---------------------------------------------------------------------------------------------- colours


def setting_palette(params: Mapping | None = None, names: Iterable[str] = ()) -> dict[str, tuple]:
    """Setting name → colour. Settings of ``params["settings"]`` get colours in their params.yaml order (the
    same in every notebook of a profile); names not among them get the next colours, sorted."""
    ordered = list(params["settings"]) if params else []
    ordered += sorted(set(names) - set(ordered))
    return {s: _SETTING_COLORS[i % len(_SETTING_COLORS)] for i, s in enumerate(ordered)}


def lr_palette(lrs: Iterable[float]) -> dict[float, tuple]:
    """GD step size → colour (warm sequential, darker = larger η)."""
    lrs = sorted(set(float(x) for x in lrs))
    cols = sns.color_palette("flare", max(len(lrs), 1) + 1)[1:] if len(lrs) > 1 else [sns.color_palette("flare")[3]]
    return {lr: c for lr, c in zip(lrs, cols)}


def layer_palette(depth: int) -> list[tuple]:
    """Colours of layers 1..depth (sequential; layer 1 darkest)."""
    return sns.color_palette("viridis", depth)


# ---------------------------------------------------------------------------------------------- labels


def label(key: str, loss_fn: str | None = None) -> str:
    """Axis label for a column/quantity (:data:`LABELS`, else the measure registry's label); with ``loss_fn``
    the loss convention is appended."""
    from .measures import MEASURES

    s = LABELS.get(key) or (MEASURES.label(key) if key in MEASURES else key)
    return f"{s}, {LOSS_SHORT[loss_fn]}" if loss_fn else s


def sharpness_label(loss_fn: str | Sequence[str] | None = None, symbol: str = "sharpness") -> str:
    """``sharpness λ_max(∇²L)`` plus the loss convention(s) of the runs shown."""
    fns = [loss_fn] if isinstance(loss_fn, str) else sorted(set(loss_fn or ()))
    base = LABELS[symbol]
    return base + (f"  [{' / '.join(LOSS_SHORT[f] for f in fns)} loss]" if fns else "")


def loss_label(loss_fn: str | Sequence[str] | None = None) -> str:
    fns = [loss_fn] if isinstance(loss_fn, str) else sorted(set(loss_fn or ()))
    return LABELS["loss"] + (f"  [{' / '.join(LOSS_SHORT[f] for f in fns)}]" if fns else "")


def setting_label(name: str, params: Mapping | None = None, n: int | None = None, newline: bool = False,
                  wrap: bool = False) -> str:
    """A readable setting name, e.g. ``digits · ELU · CE (4 classes), N = 512`` (``newline``: N on a second line;
    ``wrap``: the details in parentheses and N on a second line, ``digits · ELU · CE`` / ``4 classes, N = 512``)."""
    s = (params or {}).get("settings", {}).get(name)
    extra = []
    if s is None:
        out = name
    else:
        parts = [_dataset_label(s["dataset"]), _ACTIVATION_NAMES.get(s["activation"], s["activation"]),
                 LOSS_SHORT[s["loss"]]]
        extra = ([f"{s['classes']} classes"] if s.get("classes") else []) + (
            ["standardised inputs"] if s.get("standardize") else [])
        out = " · ".join(parts)
    if wrap:
        second = ", ".join(extra + ([f"N = {n}"] if n is not None else []))
        return f"{out}\n{second}" if second else out
    out += f" ({', '.join(extra)})" if extra else ""
    if n is None:
        return out
    return f"{out}\nN = {n}" if newline else f"{out}, N = {n}"


def loss_footnote(fig, loss_fns: Iterable[str], y: float = -0.01, extra: str = "") -> None:
    """A line under the figure spelling out the loss convention(s) of the sharpness values shown."""
    fns = sorted(set(loss_fns))
    txt = "Loss convention: " + "; ".join(LOSS_FULL[f] for f in fns) + " (sharpness λ_max is of the Hessian of this loss)."
    fig.text(0.01, y, txt + (" " + extra if extra else ""), ha="left", va="top", fontsize="small", color="0.25")


def lr_label(lr: float) -> str:
    return f"GD η = {lr:g}"


def model_label(params: Mapping) -> str:
    """The model of a profile in words, e.g. ``MLP: 6 Linear layers × width 128, init default, float32``."""
    m = params["model"]
    return f"MLP: {m['depth']} Linear layers × width {m['width']}, init {m['init']}, {m['dtype']}"


def settings_table(params: Mapping, names: Iterable[str]):
    """A DataFrame describing settings: dataset, classes, activation, loss with its convention, loss threshold
    (the model is the same for all: :func:`model_label`)."""
    import pandas as pd

    rows = []
    for name in names:
        s = params["settings"][name]
        rows.append({"setting": name, "dataset": s["dataset"], "classes": s.get("classes") or "all",
                     "activation": s["activation"], "loss": LOSS_FULL[s["loss"]],
                     "loss threshold": params["loss_threshold"][s["loss"]]})
    return pd.DataFrame(rows).set_index("setting")


# ---------------------------------------------------------------------------------------------- axes


def log_axis_if_wide(ax, axis: str = "y", values=None, decades: float = 1.0) -> bool:
    """Put ``axis`` on a log scale when the positive ``values`` span more than ``decades`` decades."""
    v = np.asarray(values if values is not None else [], float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) and np.log10(v.max() / v.min()) > decades:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        return True
    return False


def panel_letters(axes, x: float = -0.02, y: float = 1.03) -> None:
    """(a), (b), … at the top left of each axis (row-major)."""
    for i, ax in enumerate(np.ravel(axes)):
        ax.text(x, y, f"({chr(97 + i)})", transform=ax.transAxes, ha="right", va="bottom", fontweight="bold")


def note(ax, text: str, loc: str = "lower right", **kw) -> None:
    """A small boxed annotation inside an axis."""
    xy = {"lower right": (0.98, 0.03, "right", "bottom"), "upper left": (0.02, 0.97, "left", "top"),
          "upper right": (0.98, 0.97, "right", "top"), "lower left": (0.02, 0.03, "left", "bottom")}[loc]
    ax.text(xy[0], xy[1], text, transform=ax.transAxes, ha=xy[2], va=xy[3], fontsize="small",
            bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="0.7", alpha=0.9), **kw)


def not_measured(ax, text: str, title: str | None = None) -> None:
    """An empty panel saying what is missing (a profile without the runs of that panel): no axes, the text
    centred in grey."""
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize="small", color="0.35",
            wrap=True, bbox=dict(boxstyle="round,pad=0.6", fc="0.97", ec="0.8"))


# ---------------------------------------------------------------------------------------------- seeds


def seed_grid(data, x: str, y: str, seed: str = "seed", log: bool = False, points: int = 600):
    """The curves ``y(x)`` of every seed on one grid: returns ``(grid, Y)`` with ``Y[i]`` seed i's curve,
    linearly interpolated (in log y with ``log``) and NaN outside the x range that seed covers. The grid is the
    union of the seeds' x values, or ``points`` evenly spaced values when that union is larger."""
    d = data[[x, y] + ([seed] if seed in data else [])].dropna()
    groups = [g.sort_values(x) for _, g in d.groupby(seed)] if seed in d else [d.sort_values(x)]
    groups = [g for g in groups if len(g)]
    if not groups:
        return np.array([]), np.empty((0, 0))
    xs = np.unique(np.concatenate([g[x].to_numpy(float) for g in groups]))
    grid = xs if len(xs) <= points else np.linspace(xs[0], xs[-1], points)
    Y = np.full((len(groups), len(grid)), np.nan)
    for i, g in enumerate(groups):
        gx, gy = g[x].to_numpy(float), g[y].to_numpy(float)
        inside = (grid >= gx[0]) & (grid <= gx[-1])
        Y[i, inside] = np.interp(grid[inside], gx, np.log(gy) if log else gy)
    return grid, (np.exp(Y) if log else Y)


def seed_spread(ax, data, x: str, y: str, seed: str = "seed", color=None, label: str | None = None,
                lines: bool = True, band: bool = True, log: bool | None = None, lw: float = 1.8, ls: str = "-",
                points: int = 600, alpha: float = 0.18, **kw):
    """``y`` against ``x`` over the seeds of ``data`` (a long table with a ``seed`` column): thin lines per seed
    (``lines``), the median over seeds (the labelled line) and the min–max range across seeds (shaded,
    ``band``), on the grid of :func:`seed_grid`. The median and the range are drawn only where every seed has
    data (a run that stops earlier, e.g. at the loss threshold, would otherwise make the median jump); beyond
    that only the thin per-seed lines continue. ``log`` (default: y > 0 everywhere) takes the median and
    interpolates in log y. A single seed is drawn as one line. Returns the median's Line2D (None without data)."""
    d = data[[x, y] + ([seed] if seed in data else [])].dropna()
    if not len(d):
        return None
    if log is None:
        log = bool((d[y] > 0).all())
    grid, Y = seed_grid(d, x, y, seed, log=log, points=points)
    if len(Y) == 1:
        return ax.plot(grid, Y[0], color=color, lw=lw, ls=ls, label=label, **kw)[0]
    if lines:
        for _, g in d.groupby(seed):
            g = g.sort_values(x)
            ax.plot(g[x], g[y], color=color, lw=0.7, ls=ls, alpha=0.45, zorder=kw.get("zorder"))
    common = np.isfinite(Y).all(axis=0)
    grid, Y = grid[common], Y[:, common]
    if not len(grid):
        return None
    med = np.exp(np.median(np.log(Y), axis=0)) if log else np.median(Y, axis=0)
    if band:
        ax.fill_between(grid, Y.min(axis=0), Y.max(axis=0), color=color, alpha=alpha, lw=0, zorder=kw.get("zorder"))
    return ax.plot(grid, med, color=color, lw=lw, ls=ls, label=label, **kw)[0]


#: what a :func:`seed_spread` curve shows, for a figure's footnote
SPREAD_NOTE = ("Curves over seeds: median line, min–max range shaded where every seed has data, thin lines the "
               "individual seeds.")


def seeds_label(seeds: Iterable) -> str:
    """``3 seeds`` or ``seed 0``: the seeds behind a curve, for a legend entry."""
    s = sorted(set(int(x) for x in seeds))
    return f"seed {s[0]}" if len(s) == 1 else f"{len(s)} seeds"


def seeds_note(table, by: str = "setting", seed: str = "seed") -> str:
    """The seeds of a long table per group ``by``, for a footnote: ``seeds 0, 1, 2 in every setting`` or
    ``seeds: a 0, 1; b 0``."""
    if table is None or not len(table):
        return "no runs"
    per = {k: ", ".join(str(int(x)) for x in sorted(g[seed].unique())) for k, g in table.groupby(by, sort=False)}
    if len(set(per.values())) == 1:
        one = next(iter(per.values()))
        return f"{'seeds' if ',' in one else 'seed'} {one} in every {by}"
    return "seeds: " + "; ".join(f"{k} {v}" for k, v in per.items())


def verdict_text(key: str, row: Mapping, heading: str = "verdict") -> str:
    """A ledger row (:func:`eoslib.results.claim_row`; :func:`eoslib.claims.judge_claim` has the same keys) as printed
    by the notebooks: ``<key> <heading> (criteria v<k>): <verdict>`` then the measured summary and the criterion."""
    v = row.get("criteria_version")
    out = f"{key} {heading}{'' if v is None else f' (criteria v{v})'}: {row['verdict']}\n  {row['summary']}"
    return out + (f"\n  criterion: {row['criterion']}" if row.get("criterion") else "")


# ---------------------------------------------------------------------------------------------- outputs


def _tick(v: float, _pos=None) -> str:
    if v <= 0 or not np.isfinite(v):
        return ""
    e = math.log10(v)
    if (v < 1e-3 or v >= 1e5) and abs(e - round(e)) < 1e-9:
        return f"$10^{{{int(round(e))}}}$"
    if 1 <= v < 1e5 and abs(v - round(v)) < 1e-9 * v:
        return f"{int(round(v))}"  # integers as they are (N = 1024, 4096), not 1.02e+03
    return f"{v:.3g}" if 1e-3 <= v < 1e5 else f"{v:.0e}"


def tidy_log_axes(fig) -> None:
    """Plain-number tick labels on every log axis of ``fig`` (1, 2, 5, 10, 0.1 …, 10ⁿ outside 1e-3…1e5),
    labelling minor ticks when an axis spans less than ~1.3 decades (so short log axes still have labels)."""
    from matplotlib import ticker

    for ax in fig.axes:
        for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            if axis.get_scale() != "log":
                continue
            lo, hi = sorted(lim)
            if lo <= 0:
                continue
            span = math.log10(hi / lo)
            axis.set_major_formatter(ticker.FuncFormatter(_tick))
            if isinstance(axis.get_major_locator(), ticker.FixedLocator):  # ticks set explicitly: keep them
                axis.set_minor_locator(ticker.NullLocator())
                continue
            axis.set_major_locator(ticker.LogLocator(base=10))
            if span < 1.3:
                subs = np.arange(2, 10) if span < 0.7 else (2, 3, 5)
                axis.set_minor_locator(ticker.LogLocator(base=10, subs=subs))
                axis.set_minor_formatter(ticker.FuncFormatter(_tick))
                axis.set_tick_params(which="minor", labelsize=mpl.rcParams["xtick.labelsize"])
            else:
                axis.set_minor_formatter(ticker.NullFormatter())


def save_figure(fig, name: str, root: str | Path | None = None, dpi: int = 150) -> dict[str, Path]:
    """Write ``figures/<name>.png`` (``dpi``, for the README) and ``figures/<name>.pdf``; returns the paths.
    Log axes get plain tick labels first (:func:`tidy_log_axes`)."""
    tidy_log_axes(fig)
    out = (profile_root() if root is None else Path(root)) / "figures"
    out.mkdir(exist_ok=True)
    paths = {}
    for ext in ("png", "pdf"):
        p = out / f"{name}.{ext}"
        fig.savefig(p, dpi=dpi, bbox_inches="tight", metadata={"CreationDate": None} if ext == "pdf" else None)
        paths[ext] = p
    return paths


def write_metrics(name: str, numbers: Mapping, root: str | Path | None = None) -> Path:
    """Write ``metrics/<name>.json`` of the profile at ``root`` (sorted keys, NaN/inf → null); returns the path."""
    p = (profile_root() if root is None else Path(root)) / "metrics" / f"{name}.json"
    write_json(numbers, p)
    return p


__all__ = ["set_style", "setting_palette", "lr_palette", "layer_palette", "SOLVER_COLORS", "SOLVER_NAMES",
           "LABELS", "label", "sharpness_label", "loss_label", "setting_label", "lr_label", "model_label",
           "settings_table", "log_axis_if_wide", "panel_letters", "note", "not_measured", "seed_grid", "seed_spread",
           "seeds_label", "seeds_note", "SPREAD_NOTE", "verdict_text", "loss_footnote", "tidy_log_axes", "save_figure",
           "write_metrics", "LOSS_SHORT", "LOSS_FULL"]


#: C4 v3's labels and their colours (label_grid)
GROWTH_LABELS = {"grows (power law)": "#1b7837", "grows, saturating": "#a6dba0", "grows, not straight (R² on means)":
                 "#d9f0d3", "no trend": "#f7f7f7", "falls": "#c2a5cf", "not measurable": "#bdbdbd"}


def label_grid(ax, table, setting: str, measures: Sequence[str], endpoints: Sequence[str]) -> None:
    """C4 v3's verdict per measure (rows) × end point (columns) of one setting, coloured by label and annotated
    with β (:func:`eoslib.results.c4_growth_table`)."""
    from matplotlib.colors import to_rgb

    t = table[table.setting == setting].set_index(["measure", "endpoint"])
    img = np.ones((len(measures), len(endpoints), 3))
    for i, m in enumerate(measures):
        for j, e in enumerate(endpoints):
            if (m, e) not in t.index:
                continue
            r = t.loc[(m, e)]
            img[i, j] = to_rgb(GROWTH_LABELS.get(r["label"], "#ffffff"))
            if r["beta"] is not None and np.isfinite(r["beta"]):
                ax.text(j, i, f"{r['beta']:.2f}", ha="center", va="center", fontsize=7)
    ax.imshow(img, aspect="auto")
    ax.set_xticks(range(len(endpoints)), endpoints, rotation=30, ha="right")
    ax.set_yticks(range(len(measures)), measures)
    ax.set_title(setting)
