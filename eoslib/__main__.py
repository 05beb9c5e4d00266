"""Command line of the pipeline (``python -m eoslib <command>``; ``dvc.yaml`` calls these).

  check-params               validate params.yaml (message names the bad key) and write runs/_plan/*.json
  stages                     list the planned stages and their runs
  train --stage ID | --run NAME [--workers W] [--progress]
                             train the runs of a stage (or one run) into runs/<name>/; finished runs are
                             skipped, interrupted ones resume from their checkpoint
  fit                        power-law fits of every pre-registered measure → metrics/powerlaw.json
  ledger                     claims ledger → CLAIMS.md and metrics/claims.json
  notebook NAME              execute notebooks/NAME.ipynb with papermill → reports/NAME.ipynb
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _params(args):
    from .config import load_params

    return load_params(Path(args.root) / args.params)


def cmd_check_params(args) -> int:
    from .config import plan, write_plan

    p = _params(args)
    files = write_plan(p, args.root)
    stages = plan(p)
    n = sum(len(s["runs"]) for s in stages.values())
    print(f"params.yaml OK: {len(stages)} training stages, {n} runs; plan in {Path(args.root) / 'runs/_plan'} "
          f"({len(files)} files)")
    return 0


def cmd_stages(args) -> int:
    from .config import plan

    for sid, st in plan(_params(args)).items():
        print(f"{sid}: {', '.join(st['runs'])}")
    return 0


def cmd_train(args) -> int:
    from .runs import execute_run, execute_stage

    root = Path(args.root)
    p = _params(args)
    workers = args.workers if args.workers is not None else p["workers"]
    t = time.perf_counter()
    if args.stage:
        f = root / "runs" / "_plan" / f"{args.stage}.json"
        if not f.exists():
            print(f"error: no planned stage {args.stage!r} ({f} missing); run `python -m eoslib check-params`",
                  file=sys.stderr)
            return 2
        execute_stage(args.stage, root, workers=workers, progress=args.progress)
    else:
        from .config import run_config

        try:
            config = run_config(p, args.run)
        except KeyError as e:
            print(f"error: {e.args[0]}", file=sys.stderr)
            return 2
        execute_run(args.run, config, root, progress=args.progress)
    print(f"done in {time.perf_counter() - t:.1f} s")
    return 0


def cmd_fit(args) -> int:
    from .ledger import write_fits

    out = write_fits(_params(args), args.root)
    prim = out["primary"]
    for s, r2 in out["primary_r2"].items():
        f = out["fits"][s][prim["endpoint"]][prim["measure"]]
        print(f"{s}: {prim['measure']}@{prim['endpoint']} β = {f.get('beta')}, R² = {r2}")
    return 0


def cmd_ledger(args) -> int:
    from .ledger import write_ledger

    rows = write_ledger(_params(args), args.root)
    for k, r in rows.items():
        print(f"{k}: {r['verdict']} — {r['summary']}")
    return 0


def cmd_notebook(args) -> int:
    import papermill as pm

    root = Path(args.root).resolve()
    p = _params(args)
    name = args.name
    nb_params = dict(p["notebooks"].get(name) or {})
    nb_params["ROOT"] = str(root)
    (root / "reports").mkdir(exist_ok=True)
    (root / "figures").mkdir(exist_ok=True)
    (root / "metrics").mkdir(exist_ok=True)
    t = time.perf_counter()
    pm.execute_notebook(str(root / "notebooks" / f"{name}.ipynb"), str(root / "reports" / f"{name}.ipynb"),
                        parameters=nb_params, cwd=str(root / "notebooks"), kernel_name=args.kernel,
                        progress_bar=False)
    print(f"{name}: executed in {time.perf_counter() - t:.1f} s → reports/{name}.ipynb")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eoslib", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=".", help="repository root (default: .)")
    ap.add_argument("--params", default="params.yaml", help="params file relative to the root")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check-params", help="validate params.yaml and write the run plan")
    sub.add_parser("stages", help="list planned stages and runs")
    t = sub.add_parser("train", help="train the runs of a stage or one run")
    g = t.add_mutually_exclusive_group(required=True)
    g.add_argument("--stage")
    g.add_argument("--run")
    t.add_argument("--workers", type=int, default=None, help="parallel processes (default: params.yaml workers)")
    t.add_argument("--progress", action="store_true", help="show a progress bar")
    sub.add_parser("fit", help="power-law fits → metrics/powerlaw.json")
    sub.add_parser("ledger", help="claims ledger → CLAIMS.md, metrics/claims.json")
    nb = sub.add_parser("notebook", help="execute a notebook with papermill")
    nb.add_argument("name")
    nb.add_argument("--kernel", default="python3")
    args = ap.parse_args(argv)
    from .config import ParamsError

    try:
        return {"check-params": cmd_check_params, "stages": cmd_stages, "train": cmd_train, "fit": cmd_fit,
                "ledger": cmd_ledger, "notebook": cmd_notebook}[args.cmd](args)
    except ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
