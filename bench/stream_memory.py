"""Peak memory of streamed scoring: ``fraudvae score`` on a large file against a file a tenth its
size, same model, same machine, one run. Target: the large file peaks within 1.5x (+100 MB) of the
small one, i.e. memory does not grow with the file.

Each ``fraudvae score`` runs as its own process (as a user runs it); its peak resident set size is
read from ``getrusage(RUSAGE_CHILDREN)`` in a fresh wrapper process, so nothing else is counted.
Data: seeded example transactions (CSV, and Parquet with --parquet).

Usage: python bench/stream_memory.py [--rows 1000000] [--parquet] [--chunk-rows 50000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fraudvae import example_transactions

WRAPPER = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_mb(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of `cmd` run as a child of a fresh process."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024, time.perf_counter() - t  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the large file (the small one has a tenth)")
    ap.add_argument("--parquet", action="store_true", help="Parquet files instead of CSV")
    ap.add_argument("--chunk-rows", type=int, default=50_000)
    a = ap.parse_args()
    exe = str(Path(sys.executable).parent / "fraudvae")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        example_transactions(20_000, 0.02, seed=0).to_csv(tmp / "train.csv", index=False)
        subprocess.run([exe, "fit", str(tmp / "train.csv"), "--model", str(tmp / "m"), "--label-column",
                        "is_fraud", "--id-column", "transaction_id", "--quiet"], check=True, stdout=subprocess.DEVNULL)
        big = example_transactions(a.rows, 0.02, seed=1).drop(columns="is_fraud")
        ext = "parquet" if a.parquet else "csv"
        files = {"small": tmp / f"small.{ext}", "large": tmp / f"large.{ext}"}
        for name, part in (("small", big.head(a.rows // 10)), ("large", big)):
            part.to_parquet(files[name]) if a.parquet else part.to_csv(files[name], index=False)
        del big, part
        results = {}
        for name, path in files.items():
            cmd = [exe, "score", str(path), "--model", str(tmp / "m"), "--output", str(tmp / f"{name}.out.csv"),
                   "--chunk-rows", str(a.chunk_rows), "--quiet"]
            results[name] = peak_mb(cmd)
    (small, ts), (large, tl) = results["small"], results["large"]
    bound = 1.5 * small + 100
    print(f"fraudvae score, {ext}, chunks of {a.chunk_rows:,} rows")
    print(f"  {a.rows // 10:>9,} rows: peak RSS {small:7.0f} MB  ({ts:5.1f} s)")
    print(f"  {a.rows:>9,} rows: peak RSS {large:7.0f} MB  ({tl:5.1f} s)")
    print(f"  ratio {large / small:.2f}x; bound 1.5 x {small:.0f} + 100 = {bound:.0f} MB: "
          f"{'within' if large <= bound else 'OUTSIDE'}")
    print(f"reproduce: python bench/stream_memory.py --rows {a.rows}{' --parquet' if a.parquet else ''} "
          f"--chunk-rows {a.chunk_rows}")


if __name__ == "__main__":
    main()
