"""Shared fixtures: one embedder for the session (loading takes a second), real demo logos."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.demo import DEMO_LOGOS
from pipeline.embedders import Embedder, create_embedder
from pipeline.service import LogoService

BRANDS = ["Coca-Cola", "Starbucks", "Lidl", "KFC", "Red Bull", "Shell"]


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
