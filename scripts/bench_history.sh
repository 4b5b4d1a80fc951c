#!/usr/bin/env bash
# The asv history: the benchmark suite over main's landed commits, kept in the repository
# (asv_benchmarks/results/MACHINE/, one small JSON file per commit).
#
#   scripts/bench_history.sh [EVERY]     # every EVERY-th commit since the suite existed
#                                        # (default 4), plus the newest; commits already
#                                        # in the results are skipped
#
# asv builds each commit's wheel in its own virtualenv (.asv/env, deps from the package
# index) and runs the current suite against it in --quick mode (one sample per benchmark:
# a history of where the time goes, not a precise timing; the regression check,
# scripts/bench_check.sh, measures more carefully). GPUKERN_BENCH_MACHINE names the
# machine (default gpukern-dev-2core: the 2-core development and CI machine); on a GPU
# machine use another name and GPUKERN_BACKEND=cupy to record the CuPy rows.
set -euo pipefail
every=${1:-4}
root=$(cd "$(dirname "$0")/.." && pwd)
asv=${ASV:-$root/.venv/bin/asv}
machine=${GPUKERN_BENCH_MACHINE:-gpukern-dev-2core}
first=eef64df  # the first commit with the asv suite of today (benchmarks of every kind)
cd "$root/asv_benchmarks"
"$asv" machine --machine "$machine" --yes >/dev/null
hashes=$(mktemp)
git -C "$root" rev-list --first-parent --reverse "$first^..main" \
  | awk -v n="$every" 'NR % n == 1' > "$hashes"
git -C "$root" rev-parse main >> "$hashes"
sort -u -o "$hashes" "$hashes"
echo "benchmarking $(wc -l < "$hashes") commits of main on machine $machine"
"$asv" run --machine "$machine" --quick --skip-existing-commits --show-stderr \
  "HASHFILE:$hashes"
rm -f "$hashes"
du -sh "results/$machine"
