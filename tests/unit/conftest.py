"""The unit tier: no model weights are loaded (``pytest tests/unit`` runs alone in about a minute).

The ``embedder`` every service fixture uses is :class:`tests.conftest.PixelEmbedder`, the services read no text
(``read_text=0``), and loading a real model (an embedder's, or the reader's OCR) fails the test that tries.
"""

from __future__ import annotations

import pytest

import pipeline.embedders
import pipeline.reading
from pipeline.config import Settings
from tests.conftest import PixelEmbedder


@pytest.fixture(scope="session")
def embedder() -> PixelEmbedder:
    return PixelEmbedder()


@pytest.fixture(autouse=True)
def no_model_weights(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the unit tier loads no model weights: use the embedder fixture")

    monkeypatch.setattr(pipeline.embedders, "build_net", refuse)  # every embedder is built through it
    monkeypatch.setattr(pipeline.reading.TextReader, "_load", refuse)  # nor the logo reader's OCR models


@pytest.fixture
def settings(tmp_path) -> Settings:
    """The shared settings without reading text (the reader's OCR models are weights too)."""
    return Settings(data_dir=tmp_path / "data", detector="whole-image", read_text=0)
