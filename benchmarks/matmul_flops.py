"""Measured fp32 matmul FLOP/s of this machine: the yardstick for model-FLOP utilisation (MFU).

    python benchmarks/matmul_flops.py                      # 1024² and 2048², torch's default threads
    python benchmarks/matmul_flops.py --sizes 512 1024 2048 4096 --repeats 20 --threads 2

An n×n by n×n matmul is 2n³ FLOPs; the figure per size is the median of the repeats, and the machine's figure
is the best size's. The other benchmarks import `matmul_flops` from here and interleave a short measurement
with each of their own steps, so that on a shared machine numerator and denominator see the same load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def matmul_flops(n: int, repeats: int = 5, dtype: torch.dtype = torch.float32) -> list[float]:
    """FLOP/s of `repeats` timed n×n @ n×n products (after one untimed warm-up)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=dtype)
    b = torch.randn(n, n, generator=gen, dtype=dtype)
    out = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=out)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        rates.append(2 * n**3 / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048], help="square matrix sizes")
    parser.add_argument("--repeats", type=int, default=10, help="timed products per size")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for n in args.sizes:
        rates = matmul_flops(n, args.repeats)
        rows.append({"n": n, "median_gflops": statistics.median(rates) / 1e9, "max_gflops": max(rates) / 1e9})
    peak = max(r["median_gflops"] for r in rows)
    print(json.dumps({"benchmark": "matmul_flops", "dtype": "float32", "threads": torch.get_num_threads(),
                      "repeats": args.repeats, "peak_gflops": round(peak, 2),
                      "sizes": [{k: round(v, 2) for k, v in r.items()} for r in rows]}))
    print(f"{'n':>6} {'median GFLOP/s':>15} {'max GFLOP/s':>12}")
    for r in rows:
        print(f"{r['n']:>6} {r['median_gflops']:>15.1f} {r['max_gflops']:>12.1f}")


if __name__ == "__main__":
    main()
