"""What the worst anonymous request of each kind costs the server: CPU seconds, wall seconds, bytes answered.

    python benchmarks/anonymous_cost.py [--demo small|full] [--data-dir DIR]

Starts ``python app.py`` (no ``ADMIN_TOKEN`` needed: everything sent here is anonymous) on a loopback port,
waits until the map, cluster health and store evaluation are made, then sends each request alone and reads the
server process's CPU time (user + system, all threads, from ``/proc``) before and after it. Each request is
the most a stranger may ask of its route: the most boxes, neighbours, ids and page sizes the routes accept.

Target (issue 32): no anonymous request above 2 s of CPU at the demo store's size, or listed with its
limit. A photo search of the bundled 1024x768 example is printed first as the yardstick. ``--data-dir`` reuses
a store (for example a full demo store built once) instead of building one in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "assets/examples/snack-box.jpg"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _dash(client: httpx.Client, page: str, outputs: list[tuple[str, str]], inputs: list[dict],
          state: list[dict], changed: str) -> httpx.Response:
    """One Dash callback over HTTP, as the page sends it."""
    last = f"{outputs[-1][0]}.{outputs[-1][1]}"
    trigger = changed.rsplit(".", 1)[0]
    (key,) = [d["output"] for d in client.get(f"/{page}/_dash-dependencies").json()
              if last in d["output"] and any(i["id"] == trigger for i in d["inputs"])]
    spec: list | dict = [{"id": i, "property": p} for i, p in outputs]
    if len(outputs) == 1:
        spec = spec[0]
    body = {"output": key, "outputs": spec, "inputs": inputs, "state": state, "changedPropIds": [changed]}
    return client.post(f"/{page}/_dash-update-component", json=body)


def requests(client: httpx.Client, max_boxes: int) -> dict[str, Callable[[], httpx.Response]]:
    """The worst anonymous request of each route, by name."""
    ids = client.get("/api/v1/ann/stored").json()["stored"]
    some = ids[:1000]
    vector = [1.0] + [0.0] * 255
    photo = PHOTO.read_bytes()
    boxes = json.dumps([[i % 700, i % 500, i % 700 + 300, i % 500 + 260] for i in range(max_boxes)])

    def gradio(boxes_drawn: int) -> httpx.Response:
        path = client.post("/gradio_api/upload", files=[("files", ("p.jpg", photo, "image/jpeg"))]).json()[0]
        drawn = [{"xmin": 10 + i, "ymin": 10, "xmax": 300 + i, "ymax": 260} for i in range(boxes_drawn)]
        started = client.post("/gradio_api/call/search", json={"data": [
            {"image": {"path": path, "meta": {"_type": "gradio.FileData"}}, "boxes": drawn}, 10 ** 9]})
        return client.get(f"/gradio_api/call/search/{started.json()['event_id']}")

    def review_screen() -> httpx.Response:
        return _dash(client, "review", [("review-queue", "children"), ("review-screen", "data"),
                                        ("review-progress", "children"), ("review-label", "options")],
                     [{"id": "review-url", "property": "search", "value": "?ids=" + ",".join(map(str, ids[:2000]))},
                      {"id": "review-version", "property": "data", "value": 0},
                      {"id": "review-label", "property": "value", "value": None}], [], "review-url.search")

    def map_figure() -> httpx.Response:
        return _dash(client, "dashboard", [("map", "figure"), ("map-meta", "data")],
                     [{"id": "map-key", "property": "data", "value": "ready"},
                      {"id": "labels-version", "property": "data", "value": 0},
                      {"id": "map-zoom", "property": "data", "value": None}],
                     [{"id": "map-meta", "property": "data", "value": None},
                      {"id": "highlighted", "property": "data", "value": None}], "map-key.data")

    def health_panel() -> httpx.Response:
        return _dash(client, "dashboard", [("purity", "children"), ("suspects", "children"),
                                           ("clusters", "children"), ("cluster-ids", "data"),
                                           ("health-tick", "disabled"), ("health-note", "children"),
                                           ("store-accuracy", "children")],
                     [{"id": "labels-version", "property": "data", "value": 0},
                      {"id": "map-key", "property": "data", "value": "ready:1:1:1"},
                      {"id": "refresh-health", "property": "n_clicks", "value": 1},
                      {"id": "health-tick", "property": "n_intervals", "value": None}], [],
                     "refresh-health.n_clicks")

    return {
        "photo search, detector (yardstick)": lambda: client.post(
            "/api/v1/search", files={"file": ("p.jpg", photo, "image/jpeg")}),
        f"photo search, {max_boxes} boxes drawn": lambda: client.post(
            "/api/v1/search", files={"file": ("p.jpg", photo, "image/jpeg")}, data={"boxes": boxes, "k": "100"}),
        f"page search event, {max_boxes} boxes, k 1e9": lambda: gradio(max_boxes),
        "ann batch, 1000 ids x 50": lambda: client.post("/api/v1/ann/batch", json={"logo_ids": some,
                                                                                   "count": 50}),
        "ann batch, 100 ids x 500": lambda: client.post("/api/v1/ann/batch", json={"logo_ids": some[:100],
                                                                                   "count": 500}),
        "ann batch walk, 1000 logos x 50": lambda: client.get("/api/v1/ann/batch",
                                                              params={"limit": 1000, "count": 50}),
        "ann/{id}, 500 neighbours": lambda: client.get(f"/api/v1/ann/{ids[0]}", params={"count": 500}),
        "ann from embedding, 500": lambda: client.post("/api/v1/ann/from_embedding",
                                                       json={"embedding": vector, "count": 500}),
        "stored ids, 100k page": lambda: client.get("/api/v1/ann/stored", params={"limit": 100_000}),
        "review queue API, 2000 ids, 200": lambda: client.get(
            "/api/v1/review", params={"ids": ",".join(map(str, ids[:2000])), "limit": 200}),
        "history, 1000 events": lambda: client.get("/api/v1/history", params={"limit": 1000}),
        "thresholds": lambda: client.get("/api/v1/labels/thresholds"),
        "store evaluation (cached)": lambda: client.get("/api/v1/evaluate/store"),
        "thumbnail": lambda: client.get(f"/api/v1/logos/{ids[0]}/thumbnail"),
        "map page": lambda: client.get("/dashboard/"),
        "map figure callback": map_figure,
        "map health panel, Refresh": health_panel,
        "review page, 2000 ids": review_screen,
        "health": lambda: client.get("/health"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", default="small", choices=["small", "full"])
    parser.add_argument("--data-dir", type=Path, help="an existing store to serve (default: a new temporary one)")
    parser.add_argument("--max-boxes", type=int, default=50, help="LOGOS_MAX_BOXES for the server")
    args = parser.parse_args()
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="anonymous-cost-")) / "data"
    port = _free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "LOGOS_DATA_DIR": str(data),
           "LOGOS_DEMO": args.demo, "LOGOS_MAX_BOXES": str(args.max_boxes)}
    env.pop("ADMIN_TOKEN", None)
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            deadline = time.time() + 1800
            while True:  # up, the map fitted, and the background reports made (their CPU is not a request's)
                try:
                    if client.get("/health").json().get("map") == "ready" and \
                            client.get("/api/v1/evaluate/store").status_code in (200, 400):
                        break
                except httpx.TransportError:
                    pass
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("the app did not get ready")
                time.sleep(2)
            time.sleep(5)
            count = client.get("/api/v1/ann/count").json()["count"]
            print(f"store: {count} logos ({args.demo} demo); CPU seconds of the server per request, alone\n")
            print(f"{'request':46} {'status':>6} {'CPU s':>7} {'wall s':>7} {'answer KB':>10}")
            for name, send in requests(client, args.max_boxes).items():
                before, started = cpu_seconds(server.pid), time.perf_counter()
                answer = send()
                wall = time.perf_counter() - started
                time.sleep(0.3)  # let the request's thread finish its accounting
                cpu = cpu_seconds(server.pid) - before
                print(f"{name:46} {answer.status_code:>6} {cpu:7.2f} {wall:7.2f} {len(answer.content) / 1024:10.1f}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
