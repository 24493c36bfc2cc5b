"""Changing the embedder: the store re-embeds every logo, atomically, from source images or thumbnails."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import run
from pipeline.embedders import create_embedder
from pipeline.importing import import_folder
from pipeline.service import LogoService
from pipeline.errors import ModelMismatchError, StoreError

OTHER = "efficientnet-lite0-avg"


@pytest.fixture(scope="module")
def other_embedder():
    return create_embedder(OTHER)


@pytest.fixture
def filled(service, gallery_dir, query_images):
    import_folder(service, gallery_dir, progress=False)
    # an upload: no source file to go back to, only its thumbnail
    service.ingest.photo(Image.open(query_images["Shell"]), labels=["Shell"], image_path="upload.png")
    service.maintenance.build_index()
    return service


def test_reembed_switches_the_store_to_the_new_model(filled, settings, other_embedder, query_images):
    old_model, count = filled._parts.store.model_id, filled._parts.store.count()
    old_file = filled._parts.store._vector_path(old_model)
    assert old_file.exists()
    service = LogoService(settings, embedder=other_embedder)
    with pytest.raises(ModelMismatchError):
        service.search.photo(query_images["Lidl"])
    report = service.maintenance.reembed(progress=False)
    assert (report.old_model, report.new_model, report.logos) == (old_model, OTHER, count)
    assert (report.from_source, report.from_thumbnail) == (count - 1, 1)
    assert service._parts.store.model_id == OTHER and service._parts.store.dim == other_embedder.dim
    assert {r.model_id for r in service._parts.store.get(service._parts.store.ids())} == {OTHER}
    assert not old_file.exists()
    # the re-embedded gallery answers with the new model
    best = service.search.photo(query_images["Lidl"]).logos[0].neighbours[0]
    assert best.label == "Lidl"
    # and a second call has nothing to do
    assert service.maintenance.reembed(progress=False).logos == 0


def test_reembed_vectors_match_embedding_the_sources_directly(filled, settings, other_embedder, gallery_dir):
    service = LogoService(settings, embedder=other_embedder)
    service.maintenance.reembed(progress=False)
    record = next(r for r in service._parts.store.get(service._parts.store.ids()) if r.image_path != "upload.png")
    expected = other_embedder.embed([Image.open(record.image_path)])[0]
    np.testing.assert_allclose(service._parts.store.vectors([record.id])[0], expected, atol=1e-5)


def test_a_failure_midway_leaves_the_old_model_in_place(filled, settings, other_embedder, query_images):
    old_model, before = filled._parts.store.model_id, filled._parts.store.vectors(filled._parts.store.ids())
    service = LogoService(settings, embedder=other_embedder)
    calls = {"n": 0}
    real_embed = other_embedder.embed

    def failing(images):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("power cut")
        return real_embed(images)

    service._parts._embedder = type("Flaky", (), {"embed": staticmethod(failing), "model_id": OTHER,
                                           "dim": other_embedder.dim})()
    with pytest.raises(RuntimeError, match="power cut"):
        service.maintenance.reembed(batch=4, progress=False)
    assert filled._parts.store.model_id == old_model
    np.testing.assert_array_equal(filled._parts.store.vectors(filled._parts.store.ids()), before)
    assert filled.search.photo(query_images["Lidl"]).logos[0].neighbours[0].label == "Lidl"


def test_switch_refuses_when_a_logo_has_no_staged_vector(filled):
    ids = filled._parts.store.ids()
    filled._parts.store.stage_vectors(OTHER, ids[:-1], np.ones((len(ids) - 1, 8), np.float32) / np.sqrt(8))
    with pytest.raises(StoreError, match="no efficientnet-lite0-avg vector"):
        filled._parts.store.switch_model(OTHER, 8, ids[:-1])
    with pytest.raises(StoreError, match="already holds"):
        filled._parts.store.stage_vectors(filled._parts.store.model_id, ids[:1], np.ones((1, 8), np.float32))


def test_cli_reembed(filled, settings, capsys):
    code = run(["-q", "--data-dir", str(settings.data_dir), "--embedder", OTHER, "reembed"])
    assert code == 0
    out = capsys.readouterr().out
    assert f'"new_model": "{OTHER}"' in out and f'"logos": {filled._parts.store.count()}' in out
