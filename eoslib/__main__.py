"""Command line (``python -m eoslib <command> [--root PROFILE_DIR] …``); each command is a module's ``main``,
which ``dvc.yaml`` calls directly (``python -m eoslib.<module>``) so a stage depends only on the code it runs.

  check-params               validate params.yaml (the message names the bad key), check the data are there,
                             write runs/_plan/*.json                              (eoslib.config check)
  stages                     list the planned stages and their runs               (eoslib.config stages)
  train --stage ID | --run NAME [--progress]
                             train a stage's runs (or one run) into runs/<name>/; finished runs are skipped,
                             interrupted ones resume from their checkpoint        (eoslib.execute)
  endpoints --setting S      measure the sweep end points → runs/endpoints/S.csv  (eoslib.endpoints)
  fit                        power-law fits → metrics/powerlaw.json              (eoslib.fits)
  ledger                     claims ledger → CLAIMS.md, metrics/claims.json      (eoslib.claims)
  claims-lock [--check]      add new criteria versions to claims.lock (or check it against the code; a
                             registered version never changes)                   (eoslib.claims lock)
  notebook NAME              execute notebooks/src/NAME.ipynb → <profile>/notebooks/NAME.ipynb (eoslib.notebooks)
  pipeline [--check]         write (or check) the profile's dvc.yaml             (eoslib.pipeline)
  plan                       the profile's runs and estimated CPU hours, from measured run costs (eoslib.estimate)

``--root``: the profile folder (default ``.``: the repository root, the default profile; e.g. ``profiles/extended``).
"""
from __future__ import annotations

import importlib
import sys

#: command → (module, arguments put before the user's)
COMMANDS = {
    "check-params": ("eoslib.config", ["check"]),
    "stages": ("eoslib.config", ["stages"]),
    "train": ("eoslib.execute", []),
    "endpoints": ("eoslib.endpoints", []),
    "fit": ("eoslib.fits", []),
    "ledger": ("eoslib.claims", []),
    "claims-lock": ("eoslib.claims", ["lock"]),
    "notebook": ("eoslib.notebooks", []),
    "pipeline": ("eoslib.pipeline", []),
    "plan": ("eoslib.estimate", ["plan"]),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    root: list[str] = []
    if len(argv) >= 2 and argv[0] == "--root":  # `python -m eoslib --root R cmd …` as well as `cmd --root R …`
        root, argv = argv[:2], argv[2:]
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module, pre = COMMANDS[argv[0]]
    return importlib.import_module(module).main(pre + argv[1:] + root)


if __name__ == "__main__":
    sys.exit(main())
