"""API latency: p50/p95 of ``POST /api/v1/search`` (1024 px photo) and ``GET /api/v1/ann/{id}``,
then photo searches from 1, 4 and 16 concurrent clients with ``/health`` probed meanwhile.

    python benchmarks/api_latency.py [--requests 30]

Starts ``python app.py`` on a free loopback port with a fresh data directory
(cold start: the demo store is built in the background; the timeline says when
``/health`` and ``/`` first answer, when a photo search is first answered, and
when ``/health`` says the store, the calibration and the map are ready), stops
it, starts it again on the same directory (warm start), sends a bounded number
of requests, prints the figures, stops the server. Targets on 2 cores: first
answer < 30 s, store ready < 10 min, warm start < 20 s, search p50 < 1 s, ann
p50 < 20 ms; under 16 concurrent searches, ``/health`` p95 < 200 ms and no 5xx.
"""

from __future__ import annotations

import argparse
import os
import threading
from concurrent.futures import ThreadPoolExecutor
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


PHOTO = ROOT / "assets/examples/snack-box.jpg"  # 1024x768, three logos


def percentiles(samples: list[float]) -> str:
    p50, p95 = np.percentile(np.array(samples) * 1000, [50, 95])
    return f"p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   (n={len(samples)})"


def start(data: str, port: int) -> tuple[subprocess.Popen, float]:
    """Start ``python app.py`` on ``data``; return it once ``/health`` answers, with the seconds that took."""
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "LOGOS_DATA_DIR": data}
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
            return server, time.perf_counter() - started
        except httpx.TransportError:
            if time.perf_counter() - started > 300 or server.poll() is not None:
                server.kill()
                raise SystemExit("the app did not start") from None
            time.sleep(0.2)


def first_start_timeline(port: int, started: float) -> dict[str, float]:
    """Seconds from ``started`` until the page, a photo search, the store, the calibration and the map are ready."""
    url = f"http://127.0.0.1:{port}"
    photo = PHOTO.read_bytes()
    marks: dict[str, float] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        while len(marks) < 5:
            if time.perf_counter() - started > 900:
                raise SystemExit(f"not ready in 15 min: {marks}")
            if "page" not in marks and client.get("/").status_code == 200:
                marks["page"] = time.perf_counter() - started
            if "search" not in marks:
                answer = client.post("/api/v1/search", files={"file": ("p.jpg", photo, "image/jpeg")})
                if answer.status_code == 200:
                    marks["search"] = time.perf_counter() - started
            health = client.get("/health").json()
            for key, state in (("store", health["store"]), ("calibration", health["calibration"]),
                               ("map", health["map"])):
                if key not in marks and state == "ready":
                    marks[key] = time.perf_counter() - started
            time.sleep(0.5)
    return marks


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=30)


def concurrency_row(url: str, photo: bytes, clients: int, per_client: int) -> str:
    """Searches from ``clients`` concurrent clients: throughput, latency, errors, and /health meanwhile."""
    health: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not done.is_set():
                t = time.perf_counter()
                client.get("/health").raise_for_status()
                health.append(time.perf_counter() - t)
                time.sleep(0.05)

    def one_client(_: int) -> list[tuple[float, int]]:
        with httpx.Client(base_url=url, timeout=300) as client:
            results = []
            for _ in range(per_client):
                t = time.perf_counter()
                status = client.post("/api/v1/search", files={"file": ("p.jpg", photo, "image/jpeg")}).status_code
                results.append((time.perf_counter() - t, status))
            return results

    prober = threading.Thread(target=probe)
    prober.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(one_client, range(clients)) for r in rs]
    wall = time.perf_counter() - started
    done.set()
    prober.join()
    latencies = [t for t, status in results if status == 200]
    errors = sum(status >= 500 for _, status in results)
    p50, p95 = np.percentile(np.array(latencies) * 1000, [50, 95]) if latencies else (float("nan"),) * 2
    h50, h95 = np.percentile(np.array(health) * 1000, [50, 95]) if health else (float("nan"),) * 2
    return (f"{clients:>7} {len(results) / wall:>9.2f} {p50:>9.0f} {p95:>9.0f} {errors:>4}"
            f" {h50:>11.1f} {h95:>11.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as data:
        started = time.perf_counter()
        server, seconds = start(data, port)
        try:
            marks = first_start_timeline(port, started)
        finally:
            stop(server)
        print(f"cold start (empty data dir): /health answers after {seconds:.1f} s, / after {marks['page']:.1f} s, "
              f"a photo search after {marks['search']:.1f} s;")
        print(f"  ready after: store {marks['store']:.1f} s, calibration {marks['calibration']:.1f} s, "
              f"map {marks['map']:.1f} s")
        server, seconds = start(data, port)
        print(f"warm start (demo store on disk):               {seconds:.1f} s")
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                photo = PHOTO.read_bytes()
                for name, send in [
                    ("POST /api/v1/search (1024x768)",
                     lambda: client.post("/api/v1/search", files={"file": ("p.jpg", photo, "image/jpeg")})),
                    ("GET /api/v1/ann/{id}?count=10", lambda: client.get(f"/api/v1/ann/{np.random.randint(1, 170)}",
                                                                         params={"count": 10})),
                ]:
                    send().raise_for_status()  # warm-up
                    samples = []
                    for _ in range(args.requests):
                        t = time.perf_counter()
                        send().raise_for_status()
                        samples.append(time.perf_counter() - t)
                    print(f"{name:<34} {percentiles(samples)}")
            print("\nconcurrent photo searches (POST /api/v1/search), /health probed every 50 ms meanwhile")
            print(f"{'clients':>7} {'photos/s':>9} {'p50 ms':>9} {'p95 ms':>9} {'5xx':>4}"
                  f" {'health p50':>11} {'health p95':>11}")
            for clients in (1, 4, 16):
                print(concurrency_row(f"http://127.0.0.1:{port}", photo, clients, max(2, 32 // clients)))
        finally:
            stop(server)


if __name__ == "__main__":
    main()
