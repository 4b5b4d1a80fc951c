#!/usr/bin/env bash
# The regression check: HEAD against the last benchmarked landed commit, on a short
# subset of the asv suite, with asv continuous (each commit built in asv's virtualenv,
# both measured in this one run). Prints the benchmarks that got slower by more than
# FACTOR (default 2.0), above the machine's noise (asv_benchmarks/README.md: a commit
# against an identical build of itself). Information only: it always exits 0.
#
#   scripts/bench_check.sh [BASE [FACTOR [NEW]]]
#
# BASE defaults to the newest strict ancestor of HEAD with results in
# asv_benchmarks/results/MACHINE (the history, scripts/bench_history.sh), else HEAD~1;
# NEW to HEAD. Commit first: asv benchmarks commits, not the working tree.
# GPUKERN_BENCH_ALL=1 prints every ratio, not only the changed ones.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
asv=${ASV:-$root/.venv/bin/asv}
machine=${GPUKERN_BENCH_MACHINE:-gpukern-dev-2core}
factor=${2:-2.0}
new=${3:-HEAD}
subset=${GPUKERN_BENCH_SUBSET:-'AnalyticKernels.time_erf_nngp_ntk|EnsembleSGL.time_10_steps|EmpiricalKernels.time_sgntk'}
cd "$root/asv_benchmarks"
base=${1:-}
if [ -z "$base" ]; then
  for h in $(git -C "$root" rev-list --first-parent HEAD~1 2>/dev/null); do
    if ls "results/$machine/${h:0:8}"-*.json >/dev/null 2>&1; then base=$h; break; fi
  done
fi
base=${base:-$(git -C "$root" rev-parse HEAD~1)}
echo "regression check: $(git -C "$root" rev-parse --short "$new") against" \
     "$(git -C "$root" rev-parse --short "$base") (factor $factor, benchmarks: $subset)"
"$asv" machine --machine "$machine" --yes >/dev/null 2>&1
tmp=$(mktemp -d)
# a scratch results folder: the committed history is not touched
sed "s|\"results_dir\": \"results\"|\"results_dir\": \"$tmp\"|" asv.conf.json > "$tmp/asv.conf.json"
sed -i "s|\"benchmark_dir\": \"benchmarks\"|\"benchmark_dir\": \"$root/asv_benchmarks/benchmarks\"|; s|\"repo\": \"..\"|\"repo\": \"$root\"|; s|\"env_dir\": \".asv/env\"|\"env_dir\": \"$root/asv_benchmarks/.asv/env\"|" "$tmp/asv.conf.json"
"$asv" continuous --config "$tmp/asv.conf.json" --machine "$machine" --factor "$factor" \
  --bench "$subset" --split ${GPUKERN_BENCH_ALL:+--no-only-changed} "$base" "$new"
status=$?
rm -rf "$tmp"
echo "regression check finished (asv exit $status; information only)"
exit 0
