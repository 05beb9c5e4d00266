"""Print the README's cross-profile ledger table from each profile's metrics/claims.json (never by hand).

    python scripts/ledger_table.py [PROFILE …]     (default: every profile with a committed ledger)

Each cell: the headline verdict with its criteria version, then every earlier registered version's verdict —
so a table that mixes versions says so in every cell.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ORDER = ["default", "extended", "long-range", "c2-edge", "causal", "authors", "mse", "device-slice", "paper"]


def root(profile: str) -> Path:
    return REPO if profile == "default" else REPO / "profiles" / profile


def cell(row: dict | None) -> str:
    if not row or row.get("verdict") == "not measured" and not row.get("measured"):
        return "not in profile"
    out = f"**{row['verdict']}** (v{row.get('criteria_version', '?')})"
    earlier = [f"{k}: {e['verdict']}" for k, e in sorted((row.get("earlier") or {}).items(), reverse=True)]
    return out + ("; " + "; ".join(earlier) if earlier else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profiles", nargs="*")
    a = ap.parse_args(argv)
    profiles = a.profiles or [p for p in ORDER if (root(p) / "metrics" / "claims.json").exists()]
    ledgers = {p: json.loads((root(p) / "metrics" / "claims.json").read_text()) for p in profiles}
    claims = [c for c in ("C1", "C2", "C3", "C4", "layers", "sensitivity", "split", "agreement")
              if any(c in d for d in ledgers.values())]
    print("| claim | " + " | ".join(profiles) + " |")
    print("|---|" + "---|" * len(profiles))
    for c in claims:
        print(f"| {c} | " + " | ".join(cell(ledgers[p].get(c)) for p in profiles) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
