"""The index, one suite for every backend (annoy, exact, milvus on milvus-lite): it agrees with exact search,
adds are visible before a rebuild, rebuilds swap and another process sees them, old generations go."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from pipeline.index import LogoIndex
from pipeline.vector_backends import ExactIndex, IndexConfig, get_backend
from pipeline.errors import BadInputError, ModelMismatchError, StoreError
from pipeline.store import LogoStore, NewLogo
from tests.conftest import unit_vectors


def fill(store: LogoStore, n: int, seed: int, dim: int = 32) -> tuple[list[int], np.ndarray]:
    vectors = unit_vectors(n, dim, seed)
    return store.add([NewLogo() for _ in range(n)], vectors, model_id="m"), vectors


BACKENDS = ["annoy", "exact", pytest.param("milvus", marks=pytest.mark.skipif(
    importlib.util.find_spec("milvus_lite") is None, reason="pip install -r requirements-milvus.txt"))]


@pytest.fixture(params=BACKENDS)
def config(request) -> IndexConfig:
    return IndexConfig(backend=request.param, n_trees=20, search_k=5000)


def test_backend_matches_exact_search(tmp_path, config):
    store = LogoStore(tmp_path)
    ids, vectors = fill(store, 300, seed=1)
    index = LogoIndex(store, tmp_path / "index", config)
    info = index.rebuild()
    assert info.count == 300 and info.backend == config.backend and info.max_id == 300
    exact = ExactIndex(np.array(ids), vectors)
    agree = 0
    for query in unit_vectors(20, 32, seed=2):
        expected = dict(zip(*(a.tolist() for a in exact.query(query, 5)), strict=True))
        got = index.search(query, 5, "m")
        assert [d for _, d in got] == sorted(d for _, d in got)
        for logo_id, distance in got:
            if logo_id in expected:  # same metric: every backend answers our angular distance
                agree += 1
                assert distance == pytest.approx(expected[logo_id], abs=1e-4)
    assert agree / (20 * 5) >= 0.98


def test_added_logos_are_found_before_any_rebuild(tmp_path, config):
    store = LogoStore(tmp_path)
    index = LogoIndex(store, tmp_path / "index", config)
    ids, vectors = fill(store, 50, seed=3)
    assert index.search(vectors[7], 1, "m")[0][0] == ids[7]  # no index built yet: all delta
    index.rebuild()
    new_ids, new_vectors = fill(store, 5, seed=4)
    nearest_id, distance = index.search(new_vectors[2], 3, "m")[0]
    assert nearest_id == new_ids[2] and distance == pytest.approx(0.0, abs=1e-3)
    # a live engine (a database) takes them in at once; a file index keeps them in the exact delta
    assert index.counts() == ((55, 0) if get_backend(config.backend).live else (50, 5))
    index.rebuild()
    assert index.counts() == (55, 0)
    assert index.search(new_vectors[2], 1, "m")[0][0] == new_ids[2]


def test_rebuild_by_another_process_is_picked_up(tmp_path, config):
    store = LogoStore(tmp_path)
    ids, vectors = fill(store, 40, seed=5)
    reader = LogoIndex(store, tmp_path / "index", config)
    writer = LogoIndex(LogoStore(tmp_path), tmp_path / "index", config)
    assert reader.info() is None
    first = writer.rebuild()
    assert reader.info() == first
    second = writer.rebuild()
    assert reader.info().generation == second.generation == first.generation + 1
    assert reader.search(vectors[0], 1, "m")[0][0] == ids[0]
    # the generation before is kept one rebuild longer (a reader may be opening it), then removed
    def generations() -> list[str]:
        return sorted({p.name.split(".idx")[0] for p in (tmp_path / "index").iterdir() if ".idx" in p.name})

    name = config.backend
    assert generations() == [f"{name}-000001", f"{name}-000002"]
    writer.rebuild()
    assert generations() == [f"{name}-000002", f"{name}-000003"]
    assert reader.search(vectors[1], 1, "m")[0][0] == ids[1]


def test_model_mismatch_and_empty_store(tmp_path, config):
    store = LogoStore(tmp_path)
    index = LogoIndex(store, tmp_path / "index", config)
    with pytest.raises(StoreError, match="empty"):
        index.rebuild()
    fill(store, 3, seed=6)
    with pytest.raises(ModelMismatchError, match="other-model"):
        index.search(unit_vectors(1, 32)[0], 1, "other-model")
    with pytest.raises(BadInputError, match="dimensions"):
        index.search(unit_vectors(1, 16)[0], 1, "m")


def test_exact_backend_and_unknown_backend(tmp_path):
    store = LogoStore(tmp_path)
    ids, vectors = fill(store, 30, seed=7)
    index = LogoIndex(store, tmp_path / "index", IndexConfig(backend="exact"))
    assert index.rebuild().backend == "exact"
    assert LogoIndex(store, tmp_path / "index", IndexConfig(backend="exact")).search(vectors[3], 1, "m")[0][0] == ids[3]
    with pytest.raises(ValueError, match="unknown index backend"):
        get_backend("faiss-someday")
