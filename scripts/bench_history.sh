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
# what the machine is (asv machine --yes records only its name) and the packages the
# history ran with (asv's environment; the suite pins none)
python3 - "results/$machine/machine.json" "$machine" <<'PY'
import json, os, platform, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
json.dump({"machine": sys.argv[2], "os": f"{platform.system()} {platform.release()}",
           "arch": platform.machine(), "cpu": cpu, "num_cpu": str(os.cpu_count()),
           "ram": str(ram), "version": 1}, open(sys.argv[1], "w"), indent=4)
PY
for py in .asv/env/*/bin/python; do
  "$py" -m pip freeze --exclude gpukern > "results/$machine/environment.txt" && break
done
du -sh "results/$machine"
