"""Storage under concurrency and after crashes: reads bounded, rebuilds serialised, stale models never used."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np

from pipeline.index import LogoIndex
from pipeline.projection import LogoMap
from pipeline.store import LogoStore, NewLogo
from tests.conftest import unit_vectors


def fill(store: LogoStore, n: int, seed: int, dim: int = 16, model: str = "m") -> tuple[list[int], np.ndarray]:
    vectors = unit_vectors(n, dim, seed)
    return store.add([NewLogo(label=f"l{i % 3}") for i in range(n)], vectors, model_id=model), vectors


def test_reading_vectors_while_logos_are_added_stops_at_the_newest_id_when_it_began(tmp_path):
    store = LogoStore(tmp_path)
    ids, vectors = fill(store, 30, seed=1)
    batches = store.iter_vectors(batch=10)
    first_ids, first = next(batches)
    fill(LogoStore(tmp_path), 500, seed=2)  # another writer grows the vector file meanwhile
    rest = list(batches)
    seen = np.concatenate([first_ids, *(b[0] for b in rest)])
    assert seen.tolist() == ids  # the new logos are left to the next read, nothing points past the map
    np.testing.assert_array_equal(np.concatenate([first, *(b[1] for b in rest)]), vectors)
    assert sum(len(b[0]) for b in store.iter_vectors()) == 530


def _rebuild(folder: str, times: int) -> list[int]:
    index = LogoIndex(LogoStore(folder), Path(folder) / "index")
    return [index.rebuild().generation for _ in range(times)]


def test_rebuilds_from_two_processes_are_serialised_and_never_reuse_a_generation(tmp_path):
    store = LogoStore(tmp_path)
    ids, vectors = fill(store, 400, seed=3)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        runs = pool.starmap(_rebuild, [(str(tmp_path), 3), (str(tmp_path), 3)])
    generations = sorted(g for run in runs for g in run)
    assert generations == list(range(1, 7))
    reader = LogoIndex(LogoStore(tmp_path), tmp_path / "index")
    assert reader.info().generation == 6
    assert reader.search(vectors[7], 1, "m")[0][0] == ids[7]
    on_disk = sorted(p.name for p in (tmp_path / "index").glob("*.idx"))
    assert on_disk == ["annoy-000005.idx", "annoy-000006.idx"]


def _switch_model(store: LogoStore, model: str, dim: int, seed: int) -> np.ndarray:
    """What a re-embed does to the store, without its rebuild (the crash window)."""
    ids = store.ids()
    vectors = unit_vectors(len(ids), dim, seed)
    store.stage_vectors(model, ids, vectors)
    store.switch_model(model, dim, ids)
    return vectors


def test_an_index_built_for_another_model_is_not_searched_and_is_rebuilt(tmp_path):
    store = LogoStore(tmp_path)
    ids, _ = fill(store, 60, seed=4)
    index = LogoIndex(store, tmp_path / "index")
    index.rebuild()
    new_vectors = _switch_model(store, "m2", 24, seed=5)  # crash here: the pointer still names an m index
    restarted = LogoIndex(LogoStore(tmp_path), tmp_path / "index")
    assert restarted.info() is None and restarted.needs_rebuild()
    nearest = restarted.search(new_vectors[11], 1, "m2")  # exact search over every logo until the rebuild
    assert nearest[0][0] == ids[11]
    info = restarted.rebuild()
    assert (info.model_id, info.dim, info.count) == ("m2", 24, 60) and not restarted.needs_rebuild()


def test_a_map_fitted_on_another_model_is_fitted_again(tmp_path):
    store = LogoStore(tmp_path / "data")
    fill(store, 40, seed=6)
    logo_map = LogoMap(store, tmp_path / "data" / "map")
    assert logo_map.start() and logo_map.wait(300).state == "ready"
    _switch_model(store, "m2", 24, seed=7)
    restarted = LogoMap(LogoStore(tmp_path / "data"), tmp_path / "data" / "map")
    assert restarted.points() is None and restarted.status().state == "empty"
    assert restarted.start() is True
    status = restarted.wait(300)
    assert status.state == "ready" and status.fitted == 40
    assert restarted.points().xy.shape == (40, 2)


def test_a_growing_delta_is_compacted_by_a_background_rebuild(settings, embedder):
    import time

    from PIL import Image

    from pipeline.service import LogoService

    service = LogoService(settings.replace(compact_after=5), embedder=embedder)
    colours = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
    service.ingest.photo(Image.new("RGB", (40, 40), colours[0]), labels=["a"])
    service.maintenance.build_index()
    for colour in colours[1:]:
        service.ingest.photo(Image.new("RGB", (40, 40), colour), labels=[colour])
    deadline = time.monotonic() + 60
    while service._parts.index.counts()[0] < 7 and time.monotonic() < deadline:
        time.sleep(0.2)
    indexed, pending = service._parts.index.counts()
    assert indexed >= 7 and indexed + pending == 8


def test_compaction_under_concurrent_searches_loses_and_fails_no_search(tmp_path):
    import threading

    store = LogoStore(tmp_path)
    index = LogoIndex(store, tmp_path / "index")
    ids, vectors = fill(store, 300, seed=11)
    known = list(zip(ids, vectors))  # grows as logos are added; searchers pick from it
    index.rebuild()
    stop, errors, searches = threading.Event(), [], [0]

    def search(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            logo_id, vector = known[int(rng.integers(len(known)))]
            try:
                found = index.search(vector, 3, "m")
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(exc))
                continue
            searches[0] += 1
            if not found or found[0][0] != logo_id:
                errors.append(f"#{logo_id} not found first: {found[:1]}")

    threads = [threading.Thread(target=search, args=(seed,)) for seed in range(2)]
    for thread in threads:
        thread.start()
    for round_ in range(3):  # adds pile up in the delta, then a compaction folds them in
        new_ids, new_vectors = fill(store, 200, seed=20 + round_)
        known.extend(zip(new_ids, new_vectors))
        index.rebuild()
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors, errors[:5]
    assert searches[0] > 50 and index.counts() == (900, 0)
