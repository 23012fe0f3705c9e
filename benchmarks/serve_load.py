"""Soak test of `emsearch serve`: concurrent clients for a bounded time, then errors, latency and the server's RSS.

    python benchmarks/serve_load.py                                 # 50 clients × 5 min on 100k rows (the target)
    nice -n 19 python benchmarks/serve_load.py --clients 20 --seconds 60   # a short check

The index is a real emsearch index over 100k synthetic clustered unit vectors in 4 languages (see vector_index.py),
built once under --work and reused; it takes the default model's identity, so every request encodes its texts
with the shipped encoder, as in production. The server is the `emsearch serve` command in its own process, bound to
127.0.0.1 on a free port; the clients are threads here, each sending one POST /search after another (a query of
random words, k = 10, every fourth restricted to one language) until the time is up. Measured: requests,
errors (any answer but 200, or a failed connection), latency p50 / p99 per request, and the server's resident
memory after --warmup seconds of the same load ("before"), halfway and after the run (a leak keeps growing in the
second half; allocator arenas and caches stop). Target: 0 errors and RSS growth < 10%. Prints a table and one
JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vector_index import build_vector_index, centres, mixture, model_for  # noqa: E402

LANGS = ("eng", "deu", "fra", "spa")
HOST = "127.0.0.1"  # a soak test sends traffic to this machine only
MAX_REQUESTS_PER_CLIENT = 1_000_000  # a second bound, besides --seconds


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of process `pid` in MiB (VmHWM: its peak)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1)) / 1024


def start_server(index: Path, model: str, console: Console) -> tuple[subprocess.Popen, int]:
    """`emsearch serve` on a free port; returns once it answers /health."""
    proc = subprocess.Popen([sys.executable, "-m", "emsearch.cli", "serve", str(index), "--model", model,
                             "--host", HOST, "--port", "0", "--quiet"], stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # the first line names the bound port
        found = re.search(rf"http://{re.escape(HOST)}:(\d+)/", line)
        if found:
            port = int(found.group(1))
            break
    else:
        raise RuntimeError(f"emsearch serve exited with code {proc.wait()} before it served")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining, so the server never blocks
    status, _ = post(port, "/health", None)
    console.print(f"server pid {proc.pid} on {HOST}:{port}: /health {status}")
    return proc, port


def post(port: int, path: str, payload: dict | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        if payload is None:
            conn.request("GET", path)
        else:
            conn.request("POST", path, json.dumps(payload), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def client(port: int, seed: int, deadline: float, latencies: list[float], errors: Counter) -> None:
    """One user: requests back to back until `deadline`; appends to the shared lists (list.append is atomic)."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(500)] + ["Wetter", "morgen", "weather", "tomorrow", "temps", "demain"]
    for i in range(MAX_REQUESTS_PER_CLIENT):
        if time.monotonic() >= deadline:
            return
        payload = {"texts": [" ".join(rng.choice(words, size=int(rng.integers(3, 15))))], "k": 10}
        if i % 4 == 3:
            payload["langs"] = [LANGS[int(rng.integers(len(LANGS)))]]
        t0 = time.perf_counter()
        try:
            status, _ = post(port, "/search", payload)
        except OSError as e:
            errors[type(e).__name__] += 1
            continue
        if status == 200:
            latencies.append(time.perf_counter() - t0)
        else:
            errors[f"HTTP {status}"] += 1


def load(port: int, clients: int, seconds: float, seed0: int = 0) -> tuple[list[float], Counter, float]:
    """`clients` concurrent clients for `seconds`: the latencies of the answered requests, the errors, the time."""
    latencies: list[float] = []
    errors: Counter = Counter()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=client, args=(port, seed0 + i, deadline, latencies, errors))
               for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=50, help="concurrent clients")
    ap.add_argument("--seconds", type=float, default=300, help="how long the clients send requests")
    ap.add_argument("--warmup", type=float, default=10, help="seconds of the same load before measuring")
    ap.add_argument("--n", type=int, default=100_000, help="rows in the index")
    ap.add_argument("--dim", type=int, default=256, help="vector dimension (256: the default model's)")
    ap.add_argument("--model", default=None, help="model bundle; default: the default model, else a stand-in")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "emsearch-bench",
                    help="where the index is built and kept between runs")
    args = ap.parse_args()
    if args.clients < 1 or args.seconds <= 0:
        raise SystemExit("--clients must be at least 1 and --seconds positive")
    console = Console(stderr=True)

    model = model_for(args.model, args.dim)
    out = args.work / f"serve-{args.n}-{args.dim}"
    args.work.mkdir(parents=True, exist_ok=True)
    xb = mixture(args.n, centres(max(1, args.n // 100), args.dim), seed=1)
    build_vector_index(xb, np.array(LANGS)[np.arange(args.n) % len(LANGS)].tolist(), out, model, console=console)
    del xb

    proc, port = start_server(out, model, console)
    try:
        # warm: page cache, the language restrictions, the allocator's per-thread arenas; not counted
        warm_errors = load(port, args.clients, args.warmup, seed0=10**6)[1]
        rss_before = rss_mib(proc.pid)
        rss_half: list[float] = []
        halfway = threading.Timer(args.seconds / 2, lambda: rss_half.append(rss_mib(proc.pid)))
        halfway.start()
        latencies, errors, elapsed = load(port, args.clients, args.seconds)
        rss_after, rss_peak = rss_mib(proc.pid), rss_mib(proc.pid, "VmHWM")
        alive = proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)  # a clean stop; ignored when this script runs as a background job
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=30)

    ms = np.asarray(latencies) * 1000
    result = {
        "benchmark": "serve_load", "n": args.n, "dim": args.dim, "clients": args.clients, "seconds": args.seconds,
        "requests": len(latencies) + sum(errors.values()), "ok": len(latencies), "errors": sum(errors.values()),
        "error_kinds": dict(errors), "warmup_errors": sum(warm_errors.values()),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
        "rss_before_mib": round(rss_before, 1), "rss_half_mib": round(rss_half[0], 1) if rss_half else None,
        "rss_after_mib": round(rss_after, 1),
        "rss_peak_mib": round(rss_peak, 1), "rss_growth_pct": round(100 * (rss_after / rss_before - 1), 2),
        "server_alive": alive, "model": "default" if model.endswith("models/default") else Path(model).name,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    table = Table(title=f"emsearch serve, {args.n:,} rows: {args.clients} clients × {args.seconds:g} s")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for row in [("requests", f"{result['requests']:,}"),
                ("errors", f"{result['errors']:,} {result['error_kinds'] or ''}"),
                ("requests/s", f"{result['rps']:,.1f}"),
                ("latency p50 / p99 (ms)", f"{result['p50_ms']} / {result['p99_ms']}"),
                ("server RSS before → halfway → after (MiB)",
                 f"{rss_before:,.0f} → {result['rss_half_mib']:,.0f} → {rss_after:,.0f} "
                 f"({result['rss_growth_pct']:+.1f}%)"),
                ("server peak RSS (MiB)", f"{rss_peak:,.0f}"), ("load average at the end", f"{result['load_avg_1m']}")]:
        table.add_row(*row)
    Console().print(table)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
