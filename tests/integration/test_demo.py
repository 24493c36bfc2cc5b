"""The demo store: every simple-icons brand printed twice, on top of the bundled brands."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest

import pipeline.demo as demo
from pipeline.errors import ConfigError
from pipeline.service import LogoService


def test_every_simple_icons_brand_comes_in_two_colour_schemes():
    logos = list(islice(demo.simple_icons_logos(progress=False), 40))
    assert len(logos) == 40 and all(logo.label for logo in logos)
    assert all(a.label == b.label for a, b in zip(logos[::2], logos[1::2], strict=True))
    first, second = np.asarray(logos[0].crop), np.asarray(logos[1].crop)
    assert first.shape[2] == 3 and first[0, 0].tolist() == [255, 255, 255]  # brand colour on white
    assert second[0, 0].tolist() != [255, 255, 255]  # white on the brand colour
    # the bundled brands too: a Coca-Cola can prints its mark white on red, as the second print does
    coca_cola = [logo for logo in islice(demo.simple_icons_logos(progress=False), 1200) if logo.label == "Coca-Cola"]
    assert (demo.DEMO_LOGOS / "Coca-Cola").is_dir() and len(coca_cola) == 2
    red_ground = np.asarray(coca_cola[1].crop)[0, 0]
    assert red_ground[0] > 150 and red_ground[1] < 80 and red_ground[2] < 80


def test_full_demo_adds_the_brands_to_the_bundled_ones_and_sizes_are_checked(settings, embedder, monkeypatch):
    original = demo.simple_icons_logos
    monkeypatch.setattr(demo, "simple_icons_logos", lambda progress: islice(original(progress), 30))
    service = LogoService(settings, embedder=embedder)
    report = demo.build_demo(service, size="full", progress=False)
    bundled = sum(1 for folder in demo.DEMO_LOGOS.iterdir() for _ in folder.iterdir())
    assert report["built"] and service.insight.count() == report["logos"] == bundled + 30
    bundled_brands = {folder.name for folder in demo.DEMO_LOGOS.iterdir()}
    assert report["labels"] == len(bundled_brands | {logo.label for logo in islice(original(False), 30)})
    assert service._parts.index.counts() == (bundled + 30, 0)
    assert demo.build_demo(service, size="full", progress=False)["built"] is False  # a filled store is kept
    with pytest.raises(ConfigError, match="LOGOS_DEMO"):
        demo.build_demo(LogoService(settings.replace(data_dir=settings.data_dir / "other"), embedder=embedder),
                        size="everything")
