#!/usr/bin/env bash
# The device slice (profiles/device-slice, issue 19 item 6): claim C4 on the real Fashion-MNIST training set at
# N = 4096, 16384 and 60000 with the authors' MLP (784 → 512 × 5 → 10, Xavier √2, ELU, CE), RKC, one seed — run
# once on one GPU, inside a wall-clock budget (default 450 s, under the 8 minutes it must end in).
#
# No DVC, papermill or installed eoslib needed (the GPU machine has none): the script runs the `cmd:` lines of the
# profile's generated dvc.yaml itself, in the profile folder, with PYTHONPATH = the repository root:
#     python -m eoslib.config check                      check-params: validate, check the data, write runs/_plan
#     python -m eoslib.execute --run <name>              each sweep run, smallest N first, under the remaining budget
#     python -m eoslib.execute --stage sweep-<setting>   (the dvc.yaml command: here it finds every run finished)
#     python -m eoslib.endpoints --setting <setting>     every powerlaw.measure at every end point
#     python -m eoslib.fits                              → metrics/powerlaw.json
#     python -m eoslib.claims                            the ledger → CLAIMS.md, metrics/claims.json
# and writes metrics/wall_times.json (per run: N, wall seconds, steps, stopped_by, reached_threshold, device name;
# per step: wall seconds and exit status) whatever happens. Notebooks are skipped.
#
# Usage (from anywhere):
#   bash scripts/device-slice.sh --prepare   on the CPU machine, once: copy the four Fashion-MNIST IDX .gz files of
#                                            the Debian package (/usr/share/datasets/fashion-mnist/) into
#                                            profiles/device-slice/data/fashion-mnist/ (ignored by git; carry it)
#   bash scripts/device-slice.sh             the slice (refuses without CUDA, or without the data)
#
# Environment:
#   DEVICE_SLICE_TINY=1       CPU dry run at tiny sizes (N = 64, 128, 256; width 16; probe 64; t = 2): the profile's
#                             params with those values, written into DEVICE_SLICE_OUT (required), data linked there
#   DEVICE_SLICE_OUT=DIR      the profile folder to fill (default: profiles/device-slice itself)
#   DEVICE_SLICE_DEVICE=D     the dry run's device (default cpu); the full run uses params.yaml's `device: auto`
#   DEVICE_SLICE_DATA_SRC=DIR the IDX files to link into DEVICE_SLICE_OUT (default: the slice's data folder, else the
#                             Debian package's)
#   DEVICE_SLICE_BUDGET_S=S   whole-script wall-clock budget in seconds (default 450)
#   DEVICE_SLICE_RESERVE_S=S  of which kept for end points, fits and ledger after training (default 170)
#   DEVICE_SLICE_COPY_TO=DIR  at the end, copy the small outputs there (metrics/, CLAIMS.md, params, the runs'
#                             summaries, configs, trajectories, the end-point tables; no .pt) — on a lent GPU machine:
#                             DEVICE_SLICE_COPY_TO=$OUT bash scripts/device-slice.sh (its $OUT comes back)
#   DEVICE_SLICE_ALLOW_CPU=1  run the full-size slice without CUDA (hours on a CPU: for checking the script only)
#   PYTHON=…                  the interpreter (default python3)
#
# Budget: every command runs under `timeout` to the script's deadline; a training run gets what is left of the
# budget minus the reserve. A run that reaches the step cap (sweep.max_steps) without reaching the loss threshold
# finishes normally and is recorded as such (stopped_by, reached_threshold: false); a run killed at the deadline is
# recorded as stopped_by "wall_clock" with the steps of its last checkpoint, and the script then exits 1 (the end
# points need every planned run). Exit status: 0 done; 1 a step failed or ran out of time; 2 bad usage;
# 3 data missing; 4 no CUDA for the full-size slice.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLICE="$REPO/profiles/device-slice"
DATA="$SLICE/data/fashion-mnist"
DEBIAN=/usr/share/datasets/fashion-mnist
FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
NEEDED=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz)   # the loader reads the training split only
PY=${PYTHON:-$(command -v python3 || command -v python)}
TINY=${DEVICE_SLICE_TINY:-0}
OUT=${DEVICE_SLICE_OUT:-}
BUDGET=${DEVICE_SLICE_BUDGET_S:-450}
RESERVE=${DEVICE_SLICE_RESERVE_S:-170}
T0=$(date +%s.%N)

say() { printf '[device-slice %6.1fs] %s\n' "$(elapsed)" "$*"; }
die() { local code=$1; shift; printf 'device-slice: error: %s\n' "$*" >&2; exit "$code"; }
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }'; }
# seconds left until $1 seconds after the start (at least 1: timeout needs a positive limit)
left_until() { awk -v a="$T0" -v b="$(date +%s.%N)" -v d="$1" 'BEGIN { s = d - (b - a); printf "%d", (s < 1 ? 1 : s) }'; }

has_files() {  # has_files DIR FILE… : every FILE is a non-empty file in DIR
  local d=$1; shift
  for f in "$@"; do [[ -s "$d/$f" ]] || return 1; done
}

prepare() {  # copy the Debian package's IDX files into the profile's (ignored) data folder
  if has_files "$DATA" "${FILES[@]}"; then echo "data ready: $DATA"; return 0; fi
  has_files "$DEBIAN" "${FILES[@]}" || die 3 "Fashion-MNIST IDX files not found in $DEBIAN (install the Debian package:
  sudo apt-get install dataset-fashion-mnist, or bash scripts/setup.sh) nor in $DATA"
  mkdir -p "$DATA" && cp "${FILES[@]/#/$DEBIAN/}" "$DATA/" || die 3 "could not copy $DEBIAN into $DATA"
  echo "copied ${#FILES[@]} files ($(du -sh "$DATA" | cut -f1)) from $DEBIAN into $DATA (ignored by git: carry it)"
}

case "${1:-}" in
  --prepare) prepare; exit $? ;;
  -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;;
  "") ;;
  *) die 2 "unknown argument '$1' (use --prepare, --help or nothing)" ;;
esac
[[ -n "$PY" ]] || die 2 "no python3 on PATH (set PYTHON)"

# ------------------------------------------------------------------------------------------------ the profile folder
if [[ "$TINY" == 1 ]]; then
  [[ -n "$OUT" ]] || die 2 "DEVICE_SLICE_TINY=1 needs DEVICE_SLICE_OUT (a folder outside the repository's profile)"
fi
PROFILE=${OUT:-$SLICE}
mkdir -p "$PROFILE" || die 2 "cannot create $PROFILE"
PROFILE=$(cd "$PROFILE" && pwd)
[[ "$TINY" != 1 || "$PROFILE" != "$SLICE" ]] || die 2 "DEVICE_SLICE_OUT must not be profiles/device-slice for the dry run"
[[ -z "${DEVICE_SLICE_DATA_SRC:-}" || "$PROFILE" != "$SLICE" ]] || die 2 "DEVICE_SLICE_DATA_SRC needs DEVICE_SLICE_OUT"

# ------------------------------------------------------------------------------------------------ the data
# The loader reads `data/fashion-mnist/` relative to the working directory — the profile folder, as under DVC —
# then the Debian package's folder; params.yaml has no key for it. The slice's own folder must hold the files (the
# GPU machine has no Debian package); another output folder gets a link to the source.
if [[ -n "${DEVICE_SLICE_DATA_SRC:-}" ]]; then
  has_files "$DEVICE_SLICE_DATA_SRC" "${NEEDED[@]}" \
    || die 3 "Fashion-MNIST is missing: ${NEEDED[*]} not in DEVICE_SLICE_DATA_SRC=$DEVICE_SLICE_DATA_SRC"
  SRC=$(cd "$DEVICE_SLICE_DATA_SRC" && pwd)
elif has_files "$DATA" "${NEEDED[@]}"; then
  SRC=$DATA
elif [[ "$PROFILE" != "$SLICE" ]] && has_files "$DEBIAN" "${NEEDED[@]}"; then
  SRC=$DEBIAN   # another folder (the dry run) links the Debian copy: nothing is written into the repository
elif has_files "$DEBIAN" "${FILES[@]}"; then
  prepare || exit $?
  SRC=$DATA
else
  die 3 "Fashion-MNIST is missing: ${NEEDED[*]} not in $DATA (nor in $DEBIAN).
  On the CPU machine run \`bash scripts/device-slice.sh --prepare\`, then carry profiles/device-slice/data to this one."
fi
if [[ "$PROFILE" != "$SLICE" ]]; then
  "$PY" - "$SLICE/params.yaml" "$PROFILE/params.yaml" "$TINY" "${DEVICE_SLICE_DEVICE:-cpu}" <<'PYEOF' || die 2 "could not write $PROFILE/params.yaml"
import sys, yaml
src, dst, tiny, device = sys.argv[1:]
p = yaml.safe_load(open(src))
if tiny == "1":  # the dry run: the same pipeline at toy sizes
    p["profile"] = "device-slice-tiny"
    p["threads"], p["device"] = 1, device
    p["model"]["width"] = 16
    p["sweep"] |= {"sizes": [64, 128, 256], "probe": 64, "time": 2.0}
with open(dst, "w") as f:
    f.write(f"# generated by scripts/device-slice.sh from {src}{' (DEVICE_SLICE_TINY=1)' if tiny == '1' else ''}\n")
    yaml.safe_dump(p, f, sort_keys=False)
PYEOF
  mkdir -p "$PROFILE/data" && rm -rf "$PROFILE/data/fashion-mnist" && ln -s "$SRC" "$PROFILE/data/fashion-mnist" \
    || die 2 "cannot link the data into $PROFILE"
fi

cd "$PROFILE" || exit 2
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
LOG=runs/_slice
rm -rf "$LOG" && mkdir -p "$LOG" metrics || die 2 "cannot write into $PROFILE"
rm -f metrics/powerlaw.json metrics/claims.json metrics/wall_times.json CLAIMS.md   # outputs of this run only
: > "$LOG/steps.tsv"
FAILED=""

finish() {  # metrics/wall_times.json from the step log and the runs' summaries — on every exit
  local rc=$?
  [[ -n "$FAILED" && $rc == 0 ]] && rc=1
  "$PY" - "$LOG" "$BUDGET" "$(elapsed)" "$rc" "$FAILED" "$TINY" <<'PYEOF' || { echo "device-slice: could not write metrics/wall_times.json" >&2; rc=1; }
import json, sys
from pathlib import Path
log, budget, total, rc, failed, tiny = sys.argv[1:]
log = Path(log)
dev = json.loads((log / "device.json").read_text()) if (log / "device.json").exists() else {}
planned = {n: c for f in Path("runs/_plan").glob("sweep-*.json") for n, c in json.loads(f.read_text())["runs"].items()}
steps, runs = [], []
for line in (log / "steps.tsv").read_text().splitlines():
    kind, name, code, wall = line.split("\t")
    steps.append({"step": name, "rc": int(code), "wall_seconds": round(float(wall), 3)})
    if kind != "run":
        continue
    folder = Path("runs") / name
    cfg = planned.get(name) or (json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists()
                                else {})
    entry = {"name": name, "N": cfg.get("n"), "wall_seconds": round(float(wall), 3), "rc": int(code),
             "device": dev.get("name")}
    if (folder / "summary.json").exists():
        s = json.loads((folder / "summary.json").read_text())
        stops = [x for x in s.get("stopped_by", []) if x]
        entry |= {"run_wall_seconds": round(s["wall_seconds"], 3), "steps": s["steps"], "stopped_by": stops,
                  "reached_threshold": "threshold" in s.get("endpoints", {}), "t_end": s["t_end"],
                  "loss_end": s["loss_end"], "sharpness_max": s.get("sharpness_max"), "run_device": s.get("device")}
    else:  # killed at the deadline or failed: the steps of its last checkpoint (every 50 steps)
        why = {-1: "not_started", 124: "wall_clock", 137: "wall_clock"}.get(int(code), "error")
        entry |= {"stopped_by": [why], "reached_threshold": False, "steps": None}
        ck = folder / "checkpoint.pt"
        if ck.exists():
            try:
                import torch
                entry["steps"] = int(torch.load(ck, map_location="cpu", weights_only=False)["step"])
                entry["steps_note"] = "at the last checkpoint (every 50 steps)"
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                entry["steps_note"] = f"checkpoint unreadable: {e}"
    runs.append(entry)
prof = Path("runs/_plan/params.json")
out = {"profile": json.loads(prof.read_text())["profile"] if prof.exists() else Path.cwd().name, "tiny": tiny == "1", "device": dev, "budget_seconds": float(budget),
       "total_wall_seconds": round(float(total), 3), "exit_status": int(rc), "ok": int(rc) == 0 and not failed,
       "failed": failed or None, "runs": sorted(runs, key=lambda r: r["N"] or 0), "steps": steps}
out["short_of_threshold"] = [r["name"] for r in out["runs"] if not r.get("reached_threshold")]
Path("metrics").mkdir(exist_ok=True)
Path("metrics/wall_times.json").write_text(json.dumps(out, indent=1) + "\n")
print(f"metrics/wall_times.json: {len(runs)} runs, {out['total_wall_seconds']:.1f} s of {budget} s, exit {rc}")
for r in out["runs"]:
    print(f"  N = {r['N']}: {r['wall_seconds']:.1f} s, {r.get('steps')} steps, stopped by {r.get('stopped_by')}, "
          f"threshold reached: {r.get('reached_threshold')}")
if out["short_of_threshold"]:
    print(f"WARNING: {len(out['short_of_threshold'])} run(s) did not reach the loss threshold (no `threshold` end point):"
          f" {out['short_of_threshold']}")
PYEOF
  if [[ -n "${DEVICE_SLICE_COPY_TO:-}" ]]; then  # the small outputs, for a machine whose folder is thrown away
    mkdir -p "$DEVICE_SLICE_COPY_TO" && find . \( -path ./data -prune \) -o -type f \( -path './metrics/*' -o \
      -name CLAIMS.md -o -name params.yaml -o -path './runs/_slice/*' -o -path './runs/endpoints/*' -o \
      -path './runs/_plan/*' -o -name summary.json -o -name config.json -o -name provenance.json -o \
      -name trajectory.csv \) -print0 | xargs -0 -r cp --parents -t "$DEVICE_SLICE_COPY_TO" \
      && echo "device-slice: outputs (no .pt files) copied to $DEVICE_SLICE_COPY_TO" \
      || { echo "device-slice: could not copy the outputs to $DEVICE_SLICE_COPY_TO" >&2; rc=1; }
  fi
  [[ $rc == 0 ]] && echo "device-slice: done in $(elapsed) s → $PROFILE" || echo "device-slice: FAILED (${FAILED:-exit $rc}), exit $rc" >&2
  exit "$rc"
}
trap finish EXIT

# step KIND NAME DEADLINE CMD… : run CMD under timeout to DEADLINE (seconds after the start), log its wall time
step() {
  local kind=$1 name=$2 deadline=$3; shift 3
  local lim; lim=$(left_until "$deadline")
  local t; t=$(date +%s.%N)
  say "$name (≤ ${lim} s): $*"
  timeout --kill-after=10 "$lim" "$@"
  local code=$?
  local wall; wall=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
  printf '%s\t%s\t%s\t%s\n' "$kind" "$name" "$code" "$wall" >> "$LOG/steps.tsv"
  if [[ $code == 124 || $code == 137 ]]; then
    FAILED="${FAILED:+$FAILED; }$name ran out of the wall-clock budget after ${wall} s"
  elif [[ $code != 0 ]]; then
    FAILED="${FAILED:+$FAILED; }$name failed (exit $code)"
  fi
  return "$code"
}

# ------------------------------------------------------------------------------------------------ the device
"$PY" - "$LOG/device.json" <<'PYEOF' || die 4 "no usable device (above)"
import json, platform, sys
import yaml, torch
from eoslib.device import resolve
d = resolve(yaml.safe_load(open("params.yaml")).get("device", "auto"))
info = {"type": d.type, "name": torch.cuda.get_device_name(d) if d.type == "cuda" else f"cpu ({platform.machine()})",
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()}
json.dump(info, open(sys.argv[1], "w"))
print(f"device: {info['name']} (torch {info['torch']}, CUDA {info['cuda']}, Python {info['python']})")
PYEOF
DEVTYPE=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["type"])' "$LOG/device.json")
if [[ "$TINY" != 1 && "$DEVTYPE" != cuda && "${DEVICE_SLICE_ALLOW_CPU:-0}" != 1 ]]; then
  FAILED="no CUDA device"
  die 4 "torch sees no CUDA device: the full-size slice needs a GPU (DEVICE_SLICE_TINY=1 for the CPU dry run)"
fi

# ------------------------------------------------------------------------------------------------ the pipeline
TRAIN_END=$((BUDGET - RESERVE))
step stage check-params "$BUDGET" "$PY" -m eoslib.config check || exit 1
SETTINGS=$("$PY" -c 'import json; print(" ".join(json.load(open("runs/_plan/params.json"))["sweep"]["settings"]))')
for s in $SETTINGS; do
  # the runs of the stage, smallest N first: a run killed at the deadline leaves the cheaper ones done
  RUNS=$("$PY" -c 'import json, sys; r = json.load(open(sys.argv[1]))["runs"]
print(" ".join(sorted(r, key=lambda n: (r[n]["n"], n))))' "runs/_plan/sweep-$s.json") || exit 1
  for r in $RUNS; do
    if [[ "$FAILED" == *"wall-clock"* ]]; then   # out of time: the larger runs are not started
      printf 'run\t%s\t-1\t0\n' "$r" >> "$LOG/steps.tsv"; say "$r: not started (no time left)"; continue
    fi
    step run "$r" "$TRAIN_END" "$PY" -m eoslib.execute --run "$r"
  done
  [[ -z "$FAILED" ]] || exit 1
  step stage "sweep-$s" "$BUDGET" "$PY" -m eoslib.execute --stage "sweep-$s" || exit 1
done
for s in $SETTINGS; do
  step stage "endpoints-$s" "$BUDGET" "$PY" -m eoslib.endpoints --setting "$s" || exit 1
done
step stage fit "$BUDGET" "$PY" -m eoslib.fits || exit 1
step stage ledger "$BUDGET" "$PY" -m eoslib.claims || exit 1
exit 0
