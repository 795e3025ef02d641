"""Foundation benchmarks (numbers go to benchmarks/RESULTS.md and the issue note; never asserted in tests).

1. `manifest build` of the ISIC 2020 metadata (33,126 rows), metadata-only.
2. `manifest validate --check-files` on the 10,015 HAM10000 images with 2 workers: images/s.
3. `split` of ISIC 2020 (5 folds + test) and HAM10000.

Run: LESIONKIT_REAL_DATA=../shared/data .venv/bin/python benchmarks/bench_manifest.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], repeat: int) -> dict:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return {"cmd": " ".join(cmd[1:]), "median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    real = Path(os.environ.get("LESIONKIT_REAL_DATA", "../shared/data"))
    if not real.is_dir():
        sys.exit(f"real data not found at {real}: set LESIONKIT_REAL_DATA")
    lk = str(Path(sys.executable).with_name("lesionkit"))
    results = {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        isic = f"{tmp}/isic2020.parquet"
        ham = f"{tmp}/ham.parquet"
        results["build_isic2020_33k"] = timed([lk, "manifest", "build", str(real / "isic2020"), "--format", "isic2020",
                                               "--out", isic, "--allow-missing-images", "--overwrite"], args.repeat)
        results["build_ham10000_with_image_headers"] = timed([lk, "manifest", "build", str(real / "ham10000"), "--format",
                                                               "ham10000", "--out", ham, "--overwrite"], args.repeat)
        v = timed([lk, "manifest", "validate", ham, "--check-files", "--workers", "2"], args.repeat)
        v["images_per_s_end_to_end"] = round(10015 / v["median_s"], 1)
        # decode-only rate as the library measures it (excludes interpreter start-up and parquet read)
        from lesionkit.manifest.validate import validate_manifest
        rates = [validate_manifest(Path(ham), check_files=True, workers=2)[1]["images_per_s"] for _ in range(args.repeat)]
        v["images_per_s_decode"] = statistics.median(rates)
        results["validate_check_files_ham10000_2_workers"] = v
        results["split_isic2020_5fold_test0.2"] = timed([lk, "split", isic, "--out", f"{tmp}/s.json", "--test-frac", "0.2", "--overwrite"], args.repeat)
        results["split_ham10000_5fold_test0.2"] = timed([lk, "split", ham, "--out", f"{tmp}/h.json", "--test-frac", "0.2", "--overwrite"], args.repeat)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
