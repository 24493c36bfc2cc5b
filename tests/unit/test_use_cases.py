"""The use cases over a real store and index, with the pixel stand-in for the model: what each promises, quickly."""

from __future__ import annotations

import time

import pytest
from PIL import Image

from pipeline.annotation import ReviewVerdict
from pipeline.errors import BadInputError, LogoNotFoundError, NotReadyError
from pipeline.progress import BuildTracker
from pipeline.store import NewLogo, PhotoRecord
from pipeline.types import LabelSource

COLOURS = {"red": (220, 30, 30), "blue": (30, 40, 220), "green": (30, 200, 60)}


def square(colour: str, shade: int = 0) -> Image.Image:
    r, g, b = COLOURS[colour]
    image = Image.new("RGB", (48, 48), (min(255, r + shade), g, b))
    image.paste((255, 255, 255), (16, 16, 32, 32))
    return image


@pytest.fixture
def stocked(service):
    """Three colours, three human-labelled squares each, indexed."""
    for colour in COLOURS:
        for shade in (0, 10, 20):
            service.ingest.photo(square(colour, shade), labels=[colour], who="tester")
    service.maintenance.build_index()
    return service


def _wait(condition, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "the background work never ended"
        time.sleep(0.05)


def test_the_tracker_counts_and_says_where_it_is():
    tracker = BuildTracker()
    assert tracker.status().state == "ready" and tracker.status().progress == 1.0  # nothing to build
    tracker.start(total=400, message="importing the bundled logos")
    tracker.advance(100)
    status = tracker.status()
    assert status.building and status.progress == 0.25
    assert status.sentence() == "Building the store: 25% (100 of 400 logos), importing the bundled logos."
    tracker.say("building the index")
    assert tracker.status().done == 100 and tracker.status().message == "building the index"
    tracker.fail("disk full")
    assert tracker.status().state == "failed" and "disk full" in tracker.status().sentence()


def test_a_photo_is_named_by_its_neighbours_and_a_build_without_index_refuses_it(stocked):
    result = stocked.search.photo(square("blue", 5))
    assert [logo.prediction.label for logo in result.logos] == ["blue"]
    assert {n.label for n in result.logos[0].neighbours[:3]} == {"blue"}
    stocked.build.start(total=10, message="importing")
    stocked.search.photo(square("blue"))  # an index exists: answered during the build
    empty_build = type(stocked)(stocked.settings.replace(data_dir=stocked.settings.data_dir / "other"),
                                embedder=stocked._parts.embedder)
    empty_build.build.start(total=10, message="importing")
    with pytest.raises(NotReadyError, match="Building the store: 0%"):
        empty_build.search.photo(square("blue"))


def test_a_photo_and_its_logos_are_recorded_in_one_call_even_without_logos(service):
    photo = PhotoRecord("hash-a", "a.jpg", 48, 48, 1)
    ids = service.ingest.crops([NewLogo(crop=square("red"), image_hash="hash-a", label="red",
                                        label_source=LabelSource.HUMAN)], photos=[photo])
    assert len(ids) == 1 and service.ingest.has_photo(image_hash="hash-a") and service.ingest.has_image("hash-a")
    assert service.ingest.crops([], photos=[PhotoRecord("hash-b", "b.jpg", 48, 48, 0)]) == []
    assert service.ingest.has_photo(path="b.jpg") and not service.ingest.has_image("hash-b")
    with pytest.raises(BadInputError, match="needs its crop"):
        service.ingest.crops([NewLogo(label="red")])


def test_logos_embedded_already_are_stored_with_their_vectors_and_wrong_shapes_refused(service):
    logos = [NewLogo(crop=square(colour), label=colour, label_source=LabelSource.HUMAN) for colour in COLOURS]
    vectors = service._parts.embedder.embed([square(colour) for colour in reversed(COLOURS)])  # not their own
    ids = service.ingest.crops(logos, vectors=vectors)
    service.maintenance.build_index()
    for logo_id, colour in zip(ids, reversed(COLOURS), strict=True):  # found where the given vector puts it
        assert service.search.crops([square(colour)], 1)[0][0].id == logo_id
    with pytest.raises(BadInputError, match="shape"):
        service.ingest.crops(logos, vectors=vectors[:2])
    assert service.insight.count() == 3  # nothing of the refused call was stored


def test_bulk_labels_refuse_unknown_ids_wholesale_and_undo_per_session(stocked):
    ids = list(stocked.labels.ids_with("green"))
    with pytest.raises(LogoNotFoundError, match="999"):
        stocked.labels.bulk([ids[0], 999], "lime")
    assert stocked.labels.current(ids) == {i: "green" for i in ids}  # nothing changed
    stocked.labels.bulk(ids[:2], "lime", who="ana", session="tab-1")
    assert stocked.labels.of(ids[0]) == ("lime", LabelSource.HUMAN)
    assert stocked.labels.undo("tab-2") is None  # another tab has nothing to undo
    stocked.labels.undo("tab-1", who="ana")
    assert stocked.labels.current(ids[:2]) == {ids[0]: "green", ids[1]: "green"}
    undo, change = stocked.labels.history(ids[0])[:2]  # newest first
    assert (undo["undoes"], change["undone"]) == (change["action"], 1)
    assert (change["new_label"], change["who"], change["session"]) == ("lime", "ana", "tab-1")
    with pytest.raises(LogoNotFoundError):
        stocked.labels.history(12345)


def test_a_label_change_asks_for_a_recalibration_in_the_background(stocked):
    for colour in COLOURS:  # 21 logos: enough to calibrate on
        for shade in (30, 40, 50, 60):
            stocked.ingest.photo(square(colour, shade), labels=[colour], who="tester")
    result = stocked.calibration.result
    result.wait(timeout=30)
    stocked.labels.bulk(list(stocked.labels.ids_with("red"))[:1], "crimson")
    # the signal reached the calibration: a fit for the new labels ran without anyone asking (on 21 logos it may
    # be over before a look at its state, so the calibration it left is what shows it)
    _wait(lambda: (made := result.made()) is not None and made.fingerprint == result.fingerprint())
    assert stocked.calibration.state() == "ready"


def test_machine_labels_never_replace_human_ones_and_review_turns_them_human(stocked):
    human = int(stocked.labels.ids_with("red")[0])
    stocked.labels.set([human], "blue", LabelSource.MACHINE)
    assert stocked.labels.of(human) == ("red", LabelSource.HUMAN)
    new = stocked.ingest.crops([NewLogo(crop=square("green", 30), label="green", label_source=LabelSource.MACHINE,
                                        confidence=0.6)])
    assert stocked.review.proposed_labels() == ["green"] and stocked.review.progress().machine == 1
    with pytest.raises(LogoNotFoundError):
        stocked.review.apply(ReviewVerdict(accept=[new[0], 777]), {})
    assert stocked.labels.of(new[0]) == ("green", LabelSource.MACHINE)  # nothing changed
    stocked.review.apply(ReviewVerdict(accept=new), {new[0]: "green"}, who="ana")
    assert stocked.labels.of(new[0]) == ("green", LabelSource.HUMAN) and stocked.review.proposed_labels() == []


def test_the_delta_is_compacted_in_the_background_once_it_grows(service):
    service._parts.settings = service.settings.replace(compact_after=3)
    for shade in range(6):
        service.ingest.photo(square("red", shade * 5), labels=["red"])
    _wait(lambda: service.insight.stats().pending <= 3 and service.insight.stats().indexed >= 3)
    assert not service.maintenance.needs_reembed() and not service.maintenance.needs_index()


def test_robotoff_ann_ids_come_in_pages_and_unknown_ones_pass_through(stocked):
    first, cursor = stocked.ann.stored_ids(limit=4)
    second, end = stocked.ann.stored_ids(after=cursor, limit=100)
    assert len(first) == 4 and end is None and first + second == sorted(first + second)
    assert stocked.insight.count() == 9 and stocked.ann.resolve_client_id(424242) == 424242
    assert stocked.ann.index_names() == ["pixels-test@0"] and stocked.ann.resolve_model_id("pixels-test") == "pixels-test@0"
    with pytest.raises(BadInputError, match="unknown index"):
        stocked.ann.check_index("clip")
    near = stocked.ann.from_embedding(stocked._parts.store.vectors([first[0]])[0], 2, "pixels-test")
    assert near[0].id == first[0]


def test_the_store_evaluation_is_made_in_the_background_never_on_a_read(stocked, monkeypatch):
    import pipeline.usecases.insight as insight

    monkeypatch.setattr(insight, "HEALTH_SETTLE_S", 0.05)
    assert stocked.insight.store_evaluation(wait=False) is None  # a read asks for it and computes nothing
    _wait(lambda: stocked.insight.store_evaluation(wait=False) is not None)
    report = stocked.insight.store_evaluation(wait=False)
    assert report.queries == 9 and report.top1 == 1.0
    with pytest.raises(BadInputError, match="empty"):
        type(stocked)(stocked.settings.replace(data_dir=stocked.settings.data_dir / "void"),
                      embedder=stocked._parts.embedder).insight.evaluate()
