#!/usr/bin/env bash
# Install sizes, measured: a fresh venv per install route, `du -sm` of each, one line
# each.  docs/results/embedding.md#install-sizes holds the latest output (the README
# links there).  Needs the package registry (pip); takes minutes for the full install.
#
#   bash tools/install_sizes.sh [light|full|both]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
which=${1:-both}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
measure() {  # name, pip arguments...
  local name=$1; shift
  python -m venv "$tmp/$name"
  (cd "$repo" && "$tmp/$name/bin/pip" install -q --disable-pip-version-check "$@" >"$tmp/$name.log" 2>&1) \
    || { tail -5 "$tmp/$name.log" >&2; exit 1; }
  local mb nv=0 dirs
  mb=$(du -sm "$tmp/$name" | cut -f1)
  shopt -s nullglob
  dirs=("$tmp/$name"/lib/python*/site-packages/nvidia*)
  shopt -u nullglob
  if ((${#dirs[@]})); then nv=$(du -smc "${dirs[@]}" | tail -1 | cut -f1); fi
  printf '%-6s %6d MB venv  (%d MB of it NVIDIA CUDA libraries)  pip install %s\n' "$name" "$mb" "$nv" "$*"
  rm -rf "${tmp:?}/$name"
}
[[ $which == light || $which == both ]] && measure light ".[onnx,app]"
[[ $which == full || $which == both ]] && measure full -r requirements.txt
exit 0
