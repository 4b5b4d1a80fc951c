"""Build the benchmark report from the committed asv history, readable offline.

    python scripts/bench_report.py            # -> asv_benchmarks/.asv/html/index.html
    (cd asv_benchmarks/.asv/html && python -m http.server 8000)   # then open it

``asv publish`` writes the report from asv_benchmarks/results/; its page loads jQuery,
flot, bootstrap and friends from CDNs, so without a network it shows only an error. Here
the same versions are taken from the npm registry (``npm pack``, cached in
~/.cache/gpukern/npm) into the report's ``vendor/`` folder and the page points there.
Without npm the report is left as asv wrote it (it works where the CDNs are reachable).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "asv_benchmarks" / ".asv" / "html"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gpukern" / "npm"

# the URL in asv's page -> (npm package@version, file in the package, local name)
VENDOR = {
    "https://code.jquery.com/jquery-3.3.1.min.js": ("jquery@3.3.1", "dist/jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js":
        ("flot@0.8.3", "jquery.flot.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js":
        ("flot@0.8.3", "jquery.flot.time.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js":
        ("flot@0.8.3", "jquery.flot.selection.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js":
        ("flot@0.8.3", "jquery.flot.categories.js"),
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js":
        ("flot-orderbars@1.0.0", "js/jquery.flot.orderBars.js"),
    # 1.0.1 is not on npm; 1.1.3 has the same $.fn.stupidtable
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js":
        ("stupid-table-plugin@1.1.3", "stupidtable.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js":
        ("blueimp-md5@2.19.0", "js/md5.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js":
        ("bootstrap@3.1.1", "dist/js/bootstrap.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css":
        ("bootstrap@3.1.1", "dist/css/bootstrap.min.css"),
}


def _package(spec: str) -> Path:
    """The npm tarball of ``spec`` (name@version), fetched once."""
    name, version = spec.rsplit("@", 1)
    tgz = CACHE / f"{name}-{version}.tgz"
    if not tgz.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "pack", "-q", spec], cwd=CACHE, check=True,
                       capture_output=True, timeout=120)
    return tgz


def vendor(page: Path) -> int:
    """Point ``page`` at local copies of its CDN files; returns how many it replaced."""
    text = page.read_text()
    target = page.parent / "vendor"
    target.mkdir(exist_ok=True)
    done = 0
    for url, (spec, member) in VENDOR.items():
        if url not in text:
            continue
        local = f"{spec.rsplit('@', 1)[0]}-{Path(member).name}"
        with tarfile.open(_package(spec)) as tar:
            data = tar.extractfile(f"package/{member}").read()
        (target / local).write_bytes(data)
        text = text.replace(url, f"vendor/{local}")
        done += 1
    # the CDN files' integrity hashes do not describe the registry's (unminified) copies
    text = re.sub(r'((?:src|href)="vendor/[^"]*")\s+integrity="[^"]*"', r"\1", text)
    page.write_text(text)
    return done


def main() -> int:
    asv = os.environ.get("ASV", str(ROOT / ".venv" / "bin" / "asv"))
    subprocess.run([asv, "publish"], cwd=ROOT / "asv_benchmarks", check=True)
    if shutil.which("npm") is None:
        print("npm not found: the report loads its scripts from CDNs (needs a network)")
        return 0
    n = vendor(HTML / "index.html")
    left = [u for u in VENDOR if u in (HTML / "index.html").read_text()]
    print(f"report: {HTML / 'index.html'} ({n} scripts and styles local"
          f"{', still remote: ' + ', '.join(left) if left else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
