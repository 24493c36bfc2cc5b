"""Shared fixtures: one embedder for the session (loading takes a second), real demo logos, a live app."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.demo import DEMO_LOGOS
from pipeline.embedders import Embedder, create_embedder
from pipeline.service import LogoService

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"  # the few real photos and logos the tests need, committed
BRANDS = ["Coca-Cola", "Starbucks", "Lidl", "KFC", "Red Bull", "Shell"]


class PixelEmbedder:
    """A stand-in for the embedding model in the unit tier: a crop's 12x12 colour thumbnail as a unit vector.

    The same pixels give the same vector and similar pictures nearby ones, which is all that storing, indexing,
    labelling and reviewing need; no weights are loaded.
    """

    model_id = "pixels-test@0"
    dim = 12 * 12 * 3

    def embed(self, crops: list) -> np.ndarray:
        vectors = np.stack([np.asarray(crop.convert("RGB").resize((12, 12)), np.float32).reshape(-1) - 127.5
                            for crop in crops]) if crops else np.zeros((0, self.dim), np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return create_embedder(Settings().embedder)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # the fixtures' photos are logo crops: each whole image is one logo (the detector has its own tests)
    return Settings(data_dir=tmp_path / "data", detector="whole-image")


@pytest.fixture
def service(settings: Settings, embedder: Embedder) -> LogoService:
    return LogoService(settings, embedder=embedder)


@pytest.fixture(scope="session")
def gallery_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few real demo brands as an ImageFolder tree: the clean logo and two photographed variants."""
    root = tmp_path_factory.mktemp("gallery")
    for brand in BRANDS:
        (root / brand).mkdir()
        for path in _brand_files(brand)[:3]:
            shutil.copy(path, root / brand / path.name)
    return root


@pytest.fixture(scope="session")
def query_images() -> dict[str, Path]:
    """One held-back photographed variant per brand (not in ``gallery_dir``)."""
    return {brand: _brand_files(brand)[3] for brand in BRANDS}


def _brand_files(brand: str) -> list[Path]:
    """The clean render (SLUG.png) first, then the photographed variants in order."""
    return sorted((DEMO_LOGOS / brand).iterdir(), key=lambda p: (p.suffix != ".png", p.name))


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_app(data: Path, env: dict[str, str],
                ready: Callable[[dict], bool] = lambda health: health["store"] == "ready",
                timeout: float = 240) -> Iterator[str]:
    """``python app.py`` on a free loopback port with its store in ``data`` (the small demo unless ``env`` says
    otherwise); yields its URL once ``/health`` answers and ``ready(health)`` holds (by default: the store is
    built), and stops it after. Its log goes beside ``data``."""
    port = free_port()
    env = {**os.environ, "LOGOS_DEMO": "small", **env, "HOST": "127.0.0.1", "PORT": str(port),
           "LOGOS_DATA_DIR": str(data)}
    log = data.parent / f"{data.name}.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    try:
        while True:
            try:
                if ready(json.load(urllib.request.urlopen(url + "/health", timeout=2))):
                    break
            except OSError:
                assert process.poll() is None, log.read_text()
            if time.time() > deadline:
                pytest.fail(f"the app was not ready in {timeout:.0f} s:\n" + log.read_text())
            time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # open event streams can hold a graceful shutdown
            process.kill()
            process.wait(timeout=30)


def dash_callback(client: Any, outputs: list[tuple[str, str]], inputs: list[dict], state: list[dict],
          changed: str) -> dict:
    """Call one Dash callback over HTTP, as the page does (its output key as ``_dash-dependencies`` names it;
    the callback with these outputs that ``changed`` is an input of)."""
    last = f"{outputs[-1][0]}.{outputs[-1][1]}"
    trigger = changed.rsplit(".", 1)[0]
    (key,) = [d["output"] for d in client.get("/dashboard/_dash-dependencies").json()
              if last in d["output"] and any(i["id"] == trigger for i in d["inputs"])]
    spec: list[dict] | dict = [{"id": i, "property": p} for i, p in outputs]
    if len(outputs) == 1 and "..." not in key:  # a single-output callback takes its output alone
        spec = spec[0]
    body = {"output": key, "outputs": spec, "inputs": inputs, "state": state, "changedPropIds": [changed]}
    answer = client.post("/dashboard/_dash-update-component", json=body)
    assert answer.status_code in (200, 204), answer.text  # 204: nothing to update
    return answer.json()["response"] if answer.status_code == 200 else {}
