"""The logo map: UMAP fit cached on disk, new logos placed without a refit, cluster health, bulk labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboard.figures import MAX_POINTS, figure_bytes, map_figure, map_frame
from pipeline.config import Settings
from pipeline.health import label_health, too_few_to_judge, unlabelled_clusters
from pipeline.projection import LogoMap
from pipeline.service import LogoService
from pipeline.store import LogoStore, NewLogo
from pipeline.types import LabelSource

DIM = 32
PAYLOAD_BUDGET_1M = 8_000_000  # bytes of figure JSON, whatever the store size (README: "the map at scale")


def clustered(n_clusters: int, per_cluster: int, seed: int = 0, spread: float = 0.05) -> np.ndarray:
    """Unit vectors in tight, well separated clusters, cluster by cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, DIM))
    vectors = np.repeat(centres, per_cluster, axis=0) + rng.normal(scale=spread, size=(n_clusters * per_cluster, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def fill(store: LogoStore, vectors: np.ndarray, labels: list[str | None],
         source: LabelSource = LabelSource.HUMAN) -> list[int]:
    logos = [NewLogo(label=label, label_source=source if label else None) for label in labels]
    return store.add(logos, vectors, "test-model")


@pytest.fixture
def labelled_service(tmp_path) -> tuple[LogoService, list[int]]:
    """4 clusters of 8 logos labelled a..d, except one logo of cluster a wrongly labelled 'b'."""
    service = LogoService(Settings(data_dir=tmp_path / "data", index_backend="exact", k=5))
    labels = [name for name in "abcd" for _ in range(8)]
    labels[3] = "b"  # the known mistake
    ids = fill(service._parts.store, clustered(4, 8), labels)
    service.maintenance.build_index()
    return service, ids


def test_cluster_health_finds_the_mislabelled_logo(labelled_service):
    service, ids = labelled_service
    report = service.insight.cluster_health()
    assert [(s.logo_id, s.label, s.neighbours_say) for s in report.suspects] == [(ids[3], "b", "a")]
    purity = {h.label: h.purity for h in report.labels}
    assert purity["c"] == purity["d"] == 1.0
    assert purity["a"] < 1.0 and purity["b"] < 1.0  # the stray logo dirties both labels
    assert report.labels[0].label in {"a", "b"}  # least pure first


def test_fixing_the_label_clears_the_suspect(labelled_service):
    service, ids = labelled_service
    service.labels.bulk([ids[3]], "a")
    report = service.insight.cluster_health()
    assert report.suspects == [] and all(h.purity == 1.0 for h in report.labels)


def _wait_for_health(service: LogoService, timeout: float = 30.0):
    import time

    deadline = time.time() + timeout
    while (report := service.insight.cluster_health(wait=False)) is None:
        assert time.time() < deadline, "cluster health never came"
        time.sleep(0.05)
    return report


def test_cluster_health_runs_in_the_background_never_on_a_read_and_samples_a_big_store(labelled_service,
                                                                                        monkeypatch):
    import pipeline.usecases.insight as service_module

    service, ids = labelled_service
    monkeypatch.setattr(service_module, "HEALTH_SETTLE_S", 0.05)
    monkeypatch.setattr(service_module, "HEALTH_SAMPLE", 20)  # a "big" store: 32 logos, 20 searched
    assert service.insight.cluster_health(wait=False) is None  # a read (a page load) computes nothing
    assert service.insight.cluster_health(wait=False) is None
    service.insight.request_health()
    report = _wait_for_health(service)
    assert (report.sampled, report.logos) == (20, 32)
    assert {h.label for h in report.labels} <= set("abcd") and report.labels
    assert all(s.label == "b" for s in report.suspects)  # only the known mistake can be one
    assert service.insight.cluster_health(wait=False) is report  # every later read shares the one report
    service.labels.bulk([ids[3]], "a")  # a label change: the same neighbours, a new report...
    assert service.insight.cluster_health(wait=False) is None  # ...made in the background, never by a read
    fixed = _wait_for_health(service)
    assert fixed is not report and fixed.suspects == [] and service.insight.cluster_health(wait=False) is fixed
    fill(service._parts.store, clustered(1, 3, seed=9), ["e"] * 3)  # the logos change: the old table is stale
    assert service.insight.cluster_health(wait=False) is None
    service.insight.request_health()
    assert _wait_for_health(service).logos == 35


def test_unlabelled_clusters_on_the_map_are_found_and_follow_label_changes(tmp_path):
    service = LogoService(Settings(data_dir=tmp_path / "data", embedder="efficientnet-lite0", k=5))
    ids = fill(service._parts.store, clustered(4, 12), ["a"] * 12 + ["b"] * 12 + [None] * 24)
    service.maintenance.build_index()
    service.insight.start_map()
    assert service._parts.map.wait(300).state == "ready"
    found = [set(c.ids) for c in service.insight.cluster_health().clusters]
    assert sorted(found, key=min) == [set(ids[24:36]), set(ids[36:])]  # the two unlabelled groups, nothing else
    service.labels.bulk(ids[24:36], "c")
    found = [set(c.ids) for c in service.insight.cluster_health().clusters]
    assert all(group <= set(ids[36:]) for group in found)  # labelled now: no longer an unlabelled cluster


def test_the_content_version_changes_with_every_add_but_not_with_labels(tmp_path):
    store = LogoStore(tmp_path / "data")
    ids = fill(store, clustered(2, 3), ["a"] * 6)
    before = store.content_version()
    store.set_label(ids[:2], "b", "human")
    assert store.content_version() == before
    fill(store, clustered(1, 1, seed=3), [None])
    assert store.content_version() != before


def test_the_labels_version_changes_with_every_label_change_undo_and_add(tmp_path):
    store = LogoStore(tmp_path / "data")
    ids = fill(store, clustered(2, 3), ["a"] * 3 + [None] * 3)
    seen = {store.labels_version()}
    store.set_label(ids[3:], "b", "human", session="s")
    seen.add(store.labels_version())
    store.set_label(ids[:1], None, "human")  # unlabelling is a change too
    seen.add(store.labels_version())
    store.undo_last("s")
    seen.add(store.labels_version())
    fill(store, clustered(1, 1, seed=3), [None])
    seen.add(store.labels_version())
    assert len(seen) == 5  # each step gave a new version
    before = store.labels_version()
    store.set_threshold("a", 0.9)  # thresholds are not labels
    assert store.labels_version() == before and store.content_version().endswith(f":{max(ids) + 1}")


def test_bulk_label_and_undo_restore_labels_and_sources_exactly(tmp_path):
    service = LogoService(Settings(data_dir=tmp_path / "data", index_backend="exact"))
    ids = fill(service._parts.store, clustered(1, 3), ["x", None, "y"])
    service._parts.store.set_label([ids[2]], "y", LabelSource.MACHINE)
    before = service._parts.store.labels(ids)
    action = service.labels.bulk(ids, "z", session="tab-a")
    assert {label for label, _ in service._parts.store.labels(ids).values()} == {"z"}
    assert {source for _, source in service._parts.store.labels(ids).values()} == {LabelSource.HUMAN}
    assert action.previous == before
    service.labels.bulk(ids[:1], None, session="tab-a")  # a second action: clear one
    assert service._parts.store.labels(ids[:1])[ids[0]] == (None, None)
    assert service.labels.undo("tab-b") is None  # another visitor has nothing to undo
    service.labels.undo("tab-a")
    service.labels.undo("tab-a")
    assert service._parts.store.labels(ids) == before
    assert service.labels.undo("tab-a") is None
    history = service._parts.store.label_history(ids[0])
    assert [(e["old_label"], e["new_label"]) for e in history] == [("z", "x"), (None, "z"), ("z", None), ("x", "z"),
                                                                   (None, "x")]  # the last: added labelled


def test_undo_is_per_session_and_never_reverts_a_later_change_by_someone_else(tmp_path):
    service = LogoService(Settings(data_dir=tmp_path / "data", index_backend="exact"))
    ids = fill(service._parts.store, clustered(1, 3), [None, None, None])
    service.labels.bulk(ids, "mine", session="a", who="alice")
    service.labels.bulk(ids[:1], "theirs", session="b", who="bob")
    undone = service.labels.undo("a", who="alice")
    assert undone is not None and undone.ids == ids[1:]  # ids[0] was changed since by b: it keeps b's label
    labels = service._parts.store.labels(ids)
    assert labels[ids[0]] == ("theirs", LabelSource.HUMAN) and labels[ids[1]] == (None, None)
    assert service._parts.store.label_history(ids[0])[0]["who"] == "bob"
    assert service.labels.undo("b") is not None and service._parts.store.labels(ids[:1])[ids[0]] == ("mine", LabelSource.HUMAN)


def test_bulk_label_refuses_unknown_ids_and_changes_nothing(tmp_path):
    service = LogoService(Settings(data_dir=tmp_path / "data", index_backend="exact"))
    ids = fill(service._parts.store, clustered(1, 2), ["x", "x"])
    with pytest.raises(Exception, match="unknown logo"):
        service.labels.bulk([ids[0], 999], "y")
    assert {label for label, _ in service._parts.store.labels(ids).values()} == {"x"}


def test_unlabelled_clusters_rank_big_dense_groups_first():
    rng = np.random.default_rng(0)
    big = rng.normal([0, 0], 0.05, (40, 2))
    small = rng.normal([5, 5], 0.05, (12, 2))
    noise = np.array([[20, -20], [-20, 20], [30, 0], [0, -30], [-25, -25]])
    xy = np.concatenate([big, small, noise])
    ids = np.arange(100, 100 + len(xy))
    clusters = unlabelled_clusters(ids, xy, min_cluster_size=5)
    assert [c.size for c in clusters[:2]] == [40, 12]
    assert set(clusters[0].ids) == set(range(100, 140))
    assert np.allclose(clusters[0].centre, (0, 0), atol=0.1)


def test_label_health_needs_votes_before_calling_a_suspect():
    labels = {1: ("a", LabelSource.HUMAN), 2: ("b", LabelSource.HUMAN), 3: (None, None)}
    _, suspects = label_health({1: [2, 3], 2: [1, 3], 3: [1, 2]}, labels)
    assert suspects == []  # one labelled neighbour each: not enough evidence


def test_map_fit_is_cached_reused_and_places_new_logos_without_refit(tmp_path):
    store = LogoStore(tmp_path / "data")
    fill(store, clustered(3, 12, seed=1), ["p"] * 12 + ["q"] * 12 + [None] * 12)
    logo_map = LogoMap(store, tmp_path / "data" / "map")
    assert logo_map.start() is True
    status = logo_map.wait(300)
    assert status.state == "ready" and status.fitted == 36
    points = logo_map.points()
    assert points.xy.shape == (36, 2) and np.isfinite(points.xy).all()
    # clusters stay together on the map: each point is nearer its own cluster's centre
    centres = np.stack([points.xy[i * 12:(i + 1) * 12].mean(axis=0) for i in range(3)])
    nearest = np.argmin(np.linalg.norm(points.xy[:, None] - centres[None], axis=2), axis=1)
    assert (nearest == np.repeat(np.arange(3), 12)).mean() > 0.9

    again = LogoMap(store, tmp_path / "data" / "map")  # a restart: read from disk, no fit
    assert again.status().state == "ready" and again.start() is False
    assert again.cached_for_current_store()
    assert np.array_equal(again.points().xy, points.xy)

    new_ids = fill(store, clustered(3, 12, seed=1)[:2], [None, None])  # two more logos of cluster 0
    assert not again.cached_for_current_store()
    placed = again.points()
    assert len(placed) == 38 and again.status().placed == 2 and again.status().fitted == 36
    near = placed.xy[np.isin(placed.ids, new_ids)]
    assert np.linalg.norm(near - centres[0], axis=1).max() < np.linalg.norm(near - centres[1], axis=1).min()
    assert np.array_equal(LogoMap(store, tmp_path / "data" / "map").points().ids, placed.ids)  # placements saved

    assert again.start(refit=True) is True
    assert again.wait(300).fitted == 38 and again.status().placed == 0


def test_map_needs_enough_logos(tmp_path):
    store = LogoStore(tmp_path / "data")
    fill(store, clustered(1, 3), [None] * 3)
    logo_map = LogoMap(store, tmp_path / "data" / "map")
    assert logo_map.start() is False and "at least" in logo_map.status().message


def test_map_payload_stays_bounded_at_one_million_logos():
    n = 1_000_000
    rng = np.random.default_rng(0)
    label = rng.integers(0, 5000, n).astype(str).astype(object)
    label[rng.random(n) < 0.3] = None
    source = np.where(rng.random(n) < 0.2, "human", "machine").astype(object)
    source[pd.isna(label)] = None
    labels = pd.DataFrame({"id": np.arange(n), "label": label, "source": source})
    frame = map_frame(np.arange(n), rng.normal(size=(n, 2)), labels)
    assert frame.total == n and len(frame.data) == MAX_POINTS and frame.sampled
    kept_human = (frame.data.source == "human").sum()
    assert kept_human == min(MAX_POINTS, (labels.source == "human").sum())  # people's labels are kept first
    assert frame.density is not None and frame.density.counts.sum() == n  # every logo is in the shading
    figure = map_figure(frame)
    assert figure.data[0].type == "heatmap" and figure_bytes(figure) < PAYLOAD_BUDGET_1M

    # zoomed in: every logo in the drawn box is a point, and no density is needed
    coords = rng.normal(size=(n, 2)).astype(np.float32)
    zoomed = map_frame(np.arange(n), coords, labels, view=(0.0, 0.1, 0.0, 0.1))
    x0, x1, y0, y1 = zoomed.view
    assert x0 < 0 < 0.1 < x1 and zoomed.density is None and not zoomed.sampled
    inside = (coords[:, 0] >= x0) & (coords[:, 0] <= x1) & (coords[:, 1] >= y0) & (coords[:, 1] <= y1)
    assert 0 < inside.sum() < MAX_POINTS and sorted(zoomed.data.id) == np.flatnonzero(inside).tolist()


def test_a_big_store_is_fitted_on_a_sample_and_the_rest_placed(tmp_path):
    from pipeline.projection import MapConfig

    store = LogoStore(tmp_path / "data")
    ids = fill(store, clustered(4, 30), [name for name in "abcd" for _ in range(30)])
    logo_map = LogoMap(store, tmp_path / "map", MapConfig(max_fit=50))
    status = logo_map.fit()
    assert (status.fitted, status.placed) == (50, 70)
    points = logo_map.points()
    assert sorted(points.ids.tolist()) == ids and np.isfinite(points.xy).all()
    # placed logos land among the fitted logos of their own cluster
    cluster = {i: n // 30 for n, i in enumerate(ids)}
    fitted = set(logo_map.result.current().ids.tolist())
    for n in range(4):
        mine = np.array([cluster[int(i)] == n for i in points.ids])
        was_fitted = np.array([int(i) in fitted for i in points.ids])
        centre = points.xy[mine & was_fitted].mean(axis=0)
        others = [points.xy[(~mine) & was_fitted & np.array([cluster[int(i)] == m for i in points.ids])].mean(axis=0)
                  for m in range(4) if m != n]
        for xy in points.xy[mine & ~was_fitted]:
            assert np.linalg.norm(xy - centre) < min(np.linalg.norm(xy - other) for other in others)
    again = LogoMap(store, tmp_path / "map", MapConfig(max_fit=50))  # a restart reads fit and placements back
    assert sorted(again.points().ids.tolist()) == ids


def test_a_label_of_two_logos_is_not_judged_and_its_logos_are_no_suspects():
    """The full demo store prints every brand twice; two prints of one mark that are not each other's nearest
    logo say nothing about a wrong label (they read as "purity 0 %" and two suspects before)."""
    labels = {1: ("pair", LabelSource.HUMAN), 2: ("pair", LabelSource.HUMAN)}
    labels |= {i: ("big", LabelSource.HUMAN) for i in range(3, 9)}
    near = {1: [3, 4, 5, 2], 2: [6, 7, 8, 1]} | {i: [j for j in range(3, 9) if j != i][:4] for i in range(3, 9)}
    per_label, suspects = label_health(near, labels)
    assert [h.label for h in per_label] == ["big"] and suspects == []
    assert too_few_to_judge({"pair": 2, "big": 6}) == 1
