#!/usr/bin/env bash
# Idempotent set-up for a fresh clone: the Debian Fashion-MNIST files (used by the tests and the real-data
# loader), a virtual environment in .venv with the pinned package set, and eoslib installed in editable mode.
# Re-running it does nothing once everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing Debian package dataset-fashion-mnist" >&2
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null \
    || echo "setup: could not install dataset-fashion-mnist; its loader test will be skipped" >&2
fi

# Slurm and munge: tests/test_slurm.py starts a one-node cluster with them (as root; skipped without them).
# Nothing is configured or started here: the test writes its own slurm.conf and munge key in a temp folder.
if command -v apt-get >/dev/null && ! dpkg -s slurm-wlm munge >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages slurm-wlm and munge" >&2
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    slurm-wlm munge >/dev/null || echo "setup: could not install slurm-wlm/munge; tests/test_slurm.py will be skipped" >&2
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=".venv/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch==2.13.0 is pinned: the CPU wheel; an unpinned torch would pull a multi-GB CUDA build
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
  .venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
  rm -f .venv/.installed-* && touch "$stamp"
fi
