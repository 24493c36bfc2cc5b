"""The unit tier: no model weights are loaded (``pytest tests/unit`` runs alone in about a minute).

The ``embedder`` every service fixture uses is :class:`tests.conftest.PixelEmbedder`, and loading a real model
fails the test that tries.
"""

from __future__ import annotations

import pytest

import pipeline.embedders
from tests.conftest import PixelEmbedder


@pytest.fixture(scope="session")
def embedder() -> PixelEmbedder:
    return PixelEmbedder()


@pytest.fixture(autouse=True)
def no_model_weights(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the unit tier loads no model weights: use the embedder fixture")

    monkeypatch.setattr(pipeline.embedders, "build_net", refuse)  # every embedder is built through it
