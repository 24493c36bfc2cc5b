"""import-photos and reembed on Ray Data (local mode) store what the plain in-process loops store: same logos,
same vectors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from pipeline.config import Settings
from pipeline.importing import import_folder, import_photos
from pipeline.service import LogoService
from pipeline.training.scenes import compose_scene
from tests.conftest import BRANDS, _brand_files

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="pip install -r requirements-ray.txt")


def _logos(service: LogoService) -> dict[tuple[str, tuple[int, ...]], tuple[np.ndarray, str | None]]:
    records = [r for r in service._parts.store.records() if r.box is not None]
    vectors = service._parts.store.vectors([r.id for r in records])
    return {(r.image_hash, tuple(round(v) for v in r.box.to_list())): (vector, r.label)
            for r, vector in zip(records, vectors, strict=True)}


def test_ray_import_gives_the_same_logos_and_vectors_as_the_plain_loop(tmp_path, embedder, gallery_dir):
    import ray

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(5)
    for number in range(3):
        cards = [(Image.open(_brand_files(BRANDS[number])[0]).convert("RGB"), BRANDS[number])]
        compose_scene(cards, rng, size=(640, 480), strength=0.2).image.save(photos / f"p{number}.jpg")
    (photos / "broken.jpg").write_bytes(b"not a photo")
    stores = {}
    for mode in ("plain", "ray"):
        service = LogoService(Settings(data_dir=tmp_path / mode, detector="logo-detector"), embedder=embedder)
        import_folder(service, gallery_dir, progress=False)
        service.maintenance.build_index()
        report = import_photos(service, photos, progress=False, ray=mode == "ray", workers=2)
        assert report.photos == 3 and [p for p, _ in report.failed] == [str((photos / "broken.jpg").resolve())]
        stores[mode] = _logos(service)
        again = import_photos(service, photos, progress=False, ray=mode == "ray", workers=2)
        assert again.resumed == 3 and not again.added  # resumable the same way
    ray.shutdown()
    assert stores["plain"] and stores["plain"].keys() == stores["ray"].keys()
    for key, (vector, label) in stores["plain"].items():
        np.testing.assert_allclose(stores["ray"][key][0], vector, atol=1e-5)
        assert stores["ray"][key][1] == label


def test_reembed_on_ray_gives_the_same_vectors_as_the_plain_loop(tmp_path, gallery_dir):
    import ray

    from pipeline.embedders import GREY_EMBEDDER

    vectors = {}
    for mode in ("plain", "ray"):
        grey = LogoService(Settings(data_dir=tmp_path / mode, detector="whole-image", embedder=GREY_EMBEDDER))
        import_folder(grey, gallery_dir, progress=False)
        colour = LogoService(Settings(data_dir=tmp_path / mode, detector="whole-image"))
        report = colour.maintenance.reembed(progress=False, ray=mode == "ray", workers=2)
        assert report.logos == grey.insight.count() and report.from_source == report.logos
        vectors[mode] = colour._parts.store.vectors(colour._parts.store.ids())
    ray.shutdown()
    np.testing.assert_allclose(vectors["ray"], vectors["plain"], atol=1e-5)
