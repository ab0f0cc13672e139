#!/usr/bin/env bash
# Set-up and run entry point.
#   ./launch.sh lenet [--config.x=y ...] [--workdir=DIR]   train the experiment configs/lenet.py
#   ./launch.sh test [pytest args]                          run the test suite (slow tests excluded)
#   ./launch.sh setup                                       only set up (.venv + data)
# Set-up is idempotent: a virtual environment in .venv with the pinned stack (requirements.lock), a C++
# compiler (g++, for cnnjax/ops/fast/cc), and the default data set (Fashion-MNIST, Debian package dataset-fashion-mnist).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

PYTHON=${PYTHON:-python3}
VENV=.venv
DATA_DIR=/usr/share/datasets/fashion-mnist

setup_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[launch] creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.cnnjax-installed"
  local want
  want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[launch] installing cnnjax and its pinned dependencies into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -c requirements.lock -e ".[test]"
    echo "$want" > "$stamp"
  fi
}

setup_compiler() {
  # The C++ kernels (cnnjax/ops/fast/cc) are compiled with ${CXX:-g++} on first use; without one, cnnjax warns
  # and keeps XLA's formulations, and the test suite fails (tests/ops/test_direct.py requires the build).
  if command -v "${CXX:-g++}" >/dev/null 2>&1; then
    return
  fi
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[launch] installing a C++ compiler (Debian package g++)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq g++ >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq g++ >/dev/null; }
  else
    echo "[launch] no C++ compiler (${CXX:-g++}): install g++ for cnnjax's C++ kernels (XLA's formulations otherwise)" >&2
  fi
}

setup_data() {
  if ls "$DATA_DIR"/train-images-idx3-ubyte* >/dev/null 2>&1; then
    return
  fi
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[launch] installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
  elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "[launch] installing Fashion-MNIST with sudo apt-get (Debian package dataset-fashion-mnist)"
    sudo apt-get install -y -qq dataset-fashion-mnist
  else
    cat >&2 <<MSG
[launch] Fashion-MNIST is not installed in $DATA_DIR and apt-get is not usable here.
         Either install the Debian package:  sudo apt-get install dataset-fashion-mnist
         or copy train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz
         and t10k-labels-idx1-ubyte.gz into a folder and pass --config.dataset.data_dir=FOLDER.
MSG
  fi
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup)
    setup_python; setup_compiler; setup_data ;;
  test)
    setup_python; setup_compiler; setup_data
    exec "$VENV/bin/python" -m pytest -n 2 --dist loadfile "$@" ;;
  sweep)
    setup_python; setup_compiler; setup_data
    exec "$VENV/bin/python" -m experiments.sweep "$@" ;;
  help|-h|--help)
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' ;;
  *)
    setup_python; setup_compiler; setup_data
    exec "$VENV/bin/python" -m experiments.run --config="$cmd" "$@" ;;
esac
