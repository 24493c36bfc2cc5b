"""The index: Annoy agrees with exact search, adds are visible before a rebuild, rebuilds swap."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.index import ExactIndex, IndexConfig, LogoIndex, get_backend
from pipeline.errors import BadInputError, ModelMismatchError, StoreError
from pipeline.store import LogoStore, NewLogo
from tests.conftest import unit_vectors


def fill(store: LogoStore, n: int, seed: int, dim: int = 32) -> tuple[list[int], np.ndarray]:
    vectors = unit_vectors(n, dim, seed)
    return store.add([NewLogo() for _ in range(n)], vectors, model_id="m"), vectors


def test_annoy_matches_exact_search(tmp_path):
    store = LogoStore(tmp_path)
    ids, vectors = fill(store, 300, seed=1)
    index = LogoIndex(store, tmp_path / "index", IndexConfig(n_trees=20, search_k=5000))
    info = index.rebuild()
    assert info.count == 300 and info.backend == "annoy" and info.max_id == 300
    exact = ExactIndex(np.array(ids), vectors)
    agree = 0
    for query in unit_vectors(20, 32, seed=2):
        expected = dict(zip(*(a.tolist() for a in exact.query(query, 5)), strict=True))
        got = index.search(query, 5, "m")
        assert [d for _, d in got] == sorted(d for _, d in got)
        for logo_id, distance in got:
            if logo_id in expected:  # same metric: Annoy's angular == our exact distance
                agree += 1
                assert distance == pytest.approx(expected[logo_id], abs=1e-4)
    assert agree / (20 * 5) >= 0.98


def test_added_logos_are_found_before_any_rebuild(tmp_path):
    store = LogoStore(tmp_path)
    index = LogoIndex(store, tmp_path / "index")
    ids, vectors = fill(store, 50, seed=3)
    assert index.search(vectors[7], 1, "m")[0][0] == ids[7]  # no index built yet: all delta
    index.rebuild()
    new_ids, new_vectors = fill(store, 5, seed=4)
    nearest_id, distance = index.search(new_vectors[2], 3, "m")[0]
    assert nearest_id == new_ids[2] and distance == pytest.approx(0.0, abs=1e-3)
    assert index.counts() == (50, 5)
    index.rebuild()
    assert index.counts() == (55, 0)
    assert index.search(new_vectors[2], 1, "m")[0][0] == new_ids[2]


def test_rebuild_by_another_process_is_picked_up(tmp_path):
    store = LogoStore(tmp_path)
    ids, vectors = fill(store, 40, seed=5)
    reader = LogoIndex(store, tmp_path / "index")
    writer = LogoIndex(LogoStore(tmp_path), tmp_path / "index")
    assert reader.info() is None
    first = writer.rebuild()
    assert reader.info() == first
    second = writer.rebuild()
    assert reader.info().generation == second.generation == first.generation + 1
    assert reader.search(vectors[0], 1, "m")[0][0] == ids[0]
    # the generation before is kept one rebuild longer (a reader may be opening it), then removed
    files = lambda: sorted(p.name for p in (tmp_path / "index").iterdir() if p.suffix != ".lock")  # noqa: E731
    assert files() == ["annoy-000001.idx", "annoy-000002.idx", "current.json"]
    writer.rebuild()
    assert files() == ["annoy-000002.idx", "annoy-000003.idx", "current.json"]


def test_model_mismatch_and_empty_store(tmp_path):
    store = LogoStore(tmp_path)
    index = LogoIndex(store, tmp_path / "index")
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
