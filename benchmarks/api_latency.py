"""API latency: p50/p95 of ``POST /api/v1/search`` (1024 px photo) and ``GET /api/v1/ann/{id}``.

    python benchmarks/api_latency.py [--requests 30]

Starts ``python app.py`` on a free loopback port with a fresh data directory
(the demo store), sends a bounded number of requests, prints the figures, stops
the server. Targets on 2 cores: search p50 < 1 s, ann p50 < 20 ms.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.synth import clutter  # noqa: E402


def photo_1024() -> bytes:
    """A 1024x768 packaging-like photo with a demo logo on it."""
    scene = clutter((1024, 768), np.random.default_rng(0))
    logo = Image.open(ROOT / "assets/logos/Starbucks/starbucks.png").convert("RGB").resize((300, 300))
    scene.paste(logo, (600, 200))
    buffer = io.BytesIO()
    scene.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def percentiles(samples: list[float]) -> str:
    p50, p95 = np.percentile(np.array(samples) * 1000, [50, 95])
    return f"p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   (n={len(samples)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "LOGOS_DATA_DIR": data}
        started = time.perf_counter()
        server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                while True:
                    try:
                        client.get("/health")
                        break
                    except httpx.TransportError:
                        if time.perf_counter() - started > 300 or server.poll() is not None:
                            raise SystemExit("the app did not start") from None
                        time.sleep(0.5)
                print(f"cold start (empty data dir, demo store built): {time.perf_counter() - started:.1f} s")
                photo = photo_1024()
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
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
