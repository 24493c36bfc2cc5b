"""The annotation loop end to end: auto-annotate generated scenes, review proposals through the service,
export COCO / YOLO / LabelMe / CSV, check the files against the store, and read the COCO back into a fresh store.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import shapes
from pipeline.annotation import NO_PROPOSAL, ReviewVerdict
from pipeline.cli import run
from pipeline.config import Settings
from pipeline.datasets import load_coco, load_yolo
from pipeline.errors import BadInputError
from pipeline.exports import ExportOptions, export_store
from pipeline.importing import import_dataset, import_folder, import_photos, photo_list
from pipeline.service import LogoService
from pipeline.training.scenes import compose_scene
from pipeline.types import LabelSource
from tests.conftest import BRANDS, FIXTURES, _brand_files

EMPTY = ("plain-0.jpg", "plain-1.jpg")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Eight 1024 x 768 packaging photos with one or two demo logos each, and two plain photos with none."""
    root = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(11)
    for number in range(8):
        brands = [BRANDS[number % len(BRANDS)]] + ([BRANDS[(number + 2) % len(BRANDS)]] if number % 2 else [])
        cards = [(Image.open(_brand_files(brand)[0]).convert("RGB"), brand) for brand in brands]
        scene = compose_scene(cards, rng, size=(1024, 768), strength=0.3, logo_fraction=(0.2, 0.3))
        scene.image.save(root / f"scene-{number}.jpg", quality=92)
    for number, name in enumerate(EMPTY):
        plain = np.full((768, 1024, 3), (200 + 20 * number, 190, 170), np.uint8)
        plain += rng.integers(0, 6, plain.shape, dtype=np.uint8)
        Image.fromarray(plain).save(root / name, quality=92)
    return root


@pytest.fixture(scope="module")
def annotated(tmp_path_factory, embedder, gallery_dir, query_images, scenes) -> tuple[LogoService, dict]:
    """A calibrated store of human-labelled demo logos, then the scenes auto-annotated by the bundled detector."""
    data = tmp_path_factory.mktemp("store")
    service = LogoService(Settings(data_dir=data, detector="logo-detector"), embedder=embedder)
    import_folder(service, gallery_dir, progress=False)
    more = tmp_path_factory.mktemp("more")
    for brand, path in query_images.items():
        (more / brand).mkdir()
        (more / brand / path.name).write_bytes(path.read_bytes())
    import_folder(service, more, progress=False)  # 4 logos per brand: enough to calibrate
    service.maintenance.build_index()
    service.calibration.fit()
    report = import_photos(service, scenes, report=data / "report.json", progress=False)
    return service, shapes.import_report(report)


def _logos(service: LogoService) -> list:
    return [r for r in service._parts.store.records() if r.box is not None]


def test_auto_annotation_stores_machine_labels_with_confidence_and_reports_empty_photos(annotated, scenes):
    service, report = annotated
    assert report["photos"] == 10 and not report["failed"]
    assert sorted(Path(p).name for p in report["no_logo"]) == sorted(EMPTY)
    assert json.loads((service.settings.data_dir / "report.json").read_text()) == report
    logos = _logos(service)
    assert len(logos) == report["added"] >= 8  # at least one logo per scene
    machine = [r for r in logos if r.label_source is LabelSource.MACHINE]
    assert len(machine) == report["labelled"] >= 6
    assert all(r.label in BRANDS and 0.0 <= r.confidence <= 1.0 for r in machine)
    assert not [r for r in logos if r.label_source is LabelSource.HUMAN]  # machines never write human labels
    assert len(service._parts.store.photos()) == 10  # the empty photos are recorded too


def test_a_rerun_resumes_without_duplicates(annotated, scenes):
    service, _ = annotated
    before = service.insight.count()
    again = import_photos(service, scenes, progress=False)
    assert (again.resumed, again.photos, len(again.added)) == (10, 0, 0)
    assert service.insight.count() == before
    listed = scenes / "list.jsonl"  # the same photos named in a list: done already, whatever the form
    listed.write_text("".join(json.dumps({"path": p.name}) + "\n" for p in sorted(scenes.glob("*.jpg"))))
    assert import_photos(service, listed, progress=False).resumed == 10


def test_photo_lists_in_csv_and_jsonl(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "list.csv").write_text("id,path\n1,a.jpg\n2,sub/b.png\n")
    (tmp_path / "bare.csv").write_text("a.jpg\n")
    (tmp_path / "list.jsonl").write_text('{"path": "a.jpg"}\n"c.jpg"\n\n')
    assert photo_list(tmp_path / "list.csv") == [tmp_path / "a.jpg", tmp_path / "sub" / "b.png"]
    assert photo_list(tmp_path / "bare.csv") == [tmp_path / "a.jpg"]
    assert photo_list(tmp_path / "list.jsonl") == [tmp_path / "a.jpg", tmp_path / "c.jpg"]
    (tmp_path / "bad.jsonl").write_text('{"path": 3}\n')
    with pytest.raises(BadInputError, match="line 1"):
        photo_list(tmp_path / "bad.jsonl")
    with pytest.raises(BadInputError, match="csv or .jsonl"):
        photo_list(tmp_path / "a.jpg")


@pytest.fixture(scope="module")
def reviewed(annotated) -> tuple[LogoService, dict]:
    """Through the service: half the proposals accepted, two rejected, two relabelled."""
    service, _ = annotated
    groups = service.review.queue(limit=200)
    items = [item for group in groups for item in group.items if item.label != NO_PROPOSAL]
    confidences = [item.confidence for item in items]
    proposals = {item.id: item.label for item in items}
    half = len(items) // 2
    accept = [item.id for item in items[:half]]
    reject = [item.id for item in items[half:half + 2]]
    relabel = {item.id: "Relabelled" for item in items[half + 2:half + 4]}
    changes = service.review.apply(ReviewVerdict(accept, reject, relabel), proposals, who="tester", session="s1")
    return service, {"groups": groups, "confidences": confidences, "proposals": proposals, "accept": accept,
                     "reject": reject, "relabel": relabel, "changes": changes}


def test_review_queue_groups_by_label_least_confident_first_with_references(reviewed):
    _, done = reviewed
    for group in done["groups"]:
        within = [item.confidence for item in group.items]
        assert within == sorted(within) and {item.label for item in group.items} == {group.label}
        for item in group.items:
            assert item.stored and len(item.references) == 3  # the nearest of the brand's 4 human logos
    firsts = [group.items[0].confidence for group in done["groups"]]
    assert firsts == sorted(firsts)  # the most doubtful group first


def test_verdicts_change_the_store_and_human_labels_win(reviewed):
    service, done = reviewed
    labels = service._parts.store.labels([*done["accept"], *done["reject"], *done["relabel"]])
    for logo_id in done["accept"]:
        assert labels[logo_id] == (done["proposals"][logo_id], LabelSource.HUMAN)
    for logo_id in done["reject"]:
        assert labels[logo_id] == (None, None)
        assert service._parts.store.rejected([logo_id]) == {logo_id: {done["proposals"][logo_id]}}
    for logo_id, label in done["relabel"].items():
        assert labels[logo_id] == (label, LabelSource.HUMAN)
    # a machine never brings a rejected label back, and never overwrites a human one
    rejected = done["reject"][0]
    assert not service._parts.store.set_label([rejected], done["proposals"][rejected], LabelSource.MACHINE).previous
    assert not service._parts.store.set_label(done["accept"][:1], "Other", LabelSource.MACHINE).previous
    progress = service.review.progress()
    assert progress.rejected == 2 and progress.human >= len(done["accept"]) + 2


def test_every_label_change_is_an_event_and_the_labels_follow_from_them(reviewed):
    service, done = reviewed
    derived = service._parts.store.derived_labels()
    for record in service._parts.store.records():
        assert derived.get(record.id, (None, None)) == (record.label, record.label_source), record.id
    accepted = done["accept"][0]
    events = service.labels.history(accepted)
    assert [(e["new_source"], e["who"]) for e in events] == [("human", "tester"), ("machine", "local")]
    assert events[1]["old_label"] is None and events[0]["old_label"] == events[0]["new_label"]


def test_undo_takes_a_whole_review_screen_back(tmp_path, embedder, gallery_dir):
    service = LogoService(Settings(data_dir=tmp_path, detector="whole-image"), embedder=embedder)
    import_folder(service, gallery_dir, source=LabelSource.MACHINE, progress=False)
    ids = service._parts.store.ids()
    proposals = service.labels.current(ids)
    service.review.apply(ReviewVerdict(accept=ids[:3], reject=ids[3:5]), proposals, session="me")
    assert service.review.progress().rejected == 2
    change = service.labels.undo("me")
    assert change is not None and len(change.ids) == 5
    assert all(source is LabelSource.MACHINE for _, source in service._parts.store.labels(ids[:5]).values())
    assert service.review.progress().rejected == 0
    with pytest.raises(BadInputError, match="not two"):
        service.review.apply(ReviewVerdict(accept=ids[:1], reject=ids[:1]), proposals)


def _store_boxes(service: LogoService, options: ExportOptions = ExportOptions()) -> Counter:
    return Counter((Path(r.image_path).name, tuple(round(v) for v in r.box.to_list()), r.label)
                   for r in _logos(service) if options.keeps(r))


def test_exports_match_the_store_and_coco_reads_back_into_a_fresh_store(reviewed, tmp_path, embedder):
    service, _ = reviewed
    expected = _store_boxes(service)
    assert expected  # some labelled boxes to check
    photos = {Path(p.path).name: (p.width, p.height) for p in service._parts.store.photos()}

    coco = export_store(service._parts.store, "coco", tmp_path / "coco")
    data = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert coco.photos == len(data["images"]) == 10  # the photos without a logo too
    assert {Path(i["file_name"]).name: (i["width"], i["height"]) for i in data["images"]} == photos
    names = {c["id"]: c["name"] for c in data["categories"]}
    files = {i["id"]: Path(i["file_name"]).name for i in data["images"]}
    got = Counter((files[a["image_id"]], tuple(round(v) for v in [a["bbox"][0], a["bbox"][1],
                   a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]), names[a["category_id"]])
                  for a in data["annotations"])
    assert got == expected

    yolo = export_store(service._parts.store, "yolo", tmp_path / "yolo")
    dataset = load_yolo(tmp_path / "yolo")
    assert yolo.photos == len(dataset.photos) == 10
    assert Counter((p.path.name, tuple(round(v) for v in a.box.to_list()), a.label)
                   for p in dataset.photos for a in p.annotations) == expected
    assert sum(not p.annotations for p in dataset.photos) >= 2

    export_store(service._parts.store, "labelme", tmp_path / "labelme")
    documents = [json.loads(f.read_text()) for f in (tmp_path / "labelme").glob("*.json")]
    assert len(documents) == 10
    assert Counter((Path(d["imagePath"]).name, tuple(round(v) for point in s["points"] for v in point), s["label"])
                   for d in documents for s in d["shapes"]) == expected
    assert all((tmp_path / "labelme" / d["imagePath"]).is_file() for d in documents)

    human = ExportOptions(human_only=True)
    export_store(service._parts.store, "csv", tmp_path / "logos.csv", human)
    rows = list(csv.DictReader((tmp_path / "logos.csv").open()))
    assert {row["source"] for row in rows} == {"human"}
    assert len(rows) == sum(_store_boxes(service, human).values()) + sum(
        1 for r in service._parts.store.records() if r.box is None and human.keeps(r))
    with pytest.raises(BadInputError, match="not an empty folder"):
        export_store(service._parts.store, "coco", tmp_path / "coco")

    fresh = LogoService(Settings(data_dir=tmp_path / "fresh", detector="whole-image"), embedder=embedder)
    imported = import_dataset(fresh, load_coco(tmp_path / "coco" / "annotations.json"), progress=False)
    assert not imported.failed
    assert _store_boxes(fresh) == expected
    assert len(fresh._parts.store.photos()) == 10


def test_the_store_evaluates_itself(reviewed):
    service, _ = reviewed
    report = service.insight.evaluate(k=5)
    figures = shapes.store_evaluation(report)
    assert 0.5 <= figures["top1"] <= 1.0 and figures["recall@5"] >= figures["top1"]
    assert {a["label"] for a in figures["labels"]} >= set(BRANDS)
    assert figures["queries"] == sum(a["logos"] for a in figures["labels"])
    assert service.insight.evaluate(k=5, confused=1).confused == report.confused[:1]  # the most frequent pairs
    every = service.insight.evaluate(k=5, confused=None).confused  # None: every pair, however many
    assert every == service.insight.evaluate(k=5, confused=10**6).confused


def test_cli_export_history_and_evaluate_store(reviewed, tmp_path, capsys):
    service, done = reviewed
    data = str(service.settings.data_dir)
    assert run(["--data-dir", data, "-q", "export", str(tmp_path / "out.csv"), "--format", "csv",
                "--labels", "Relabelled"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["logos"] == len(done["relabel"]) and out["labels"] == 1
    assert run(["--data-dir", data, "-q", "history", "--json", "--limit", "3"]) == 0
    events = json.loads(capsys.readouterr().out)
    assert len(events) == 3 and all(e["who"] == "tester" for e in events)
    assert run(["--data-dir", data, "-q", "evaluate", "--store", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["queries"] > 0
    assert run(["--data-dir", data, "-q", "evaluate"]) == 2


def test_import_dataset_never_records_a_photo_without_its_logos(settings, embedder, monkeypatch):
    """A crash between a photo's record and its logos' flush left the photo done and its logos lost: a re-run
    skipped it. Photos now go into the store in the same transaction as their logos."""
    from pipeline.datasets import load_yolo

    dataset = load_yolo(FIXTURES / "real-drinks")
    service = LogoService(settings.replace(detector="whole-image"), embedder=embedder)
    real_add = service._parts.store.add
    calls = []

    def crash_on_the_second_flush(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real_add(*args, **kwargs)

    monkeypatch.setattr(service._parts.store, "add", crash_on_the_second_flush)
    with pytest.raises(KeyboardInterrupt):
        import_dataset(service, dataset, batch=2, progress=False)
    monkeypatch.undo()
    boxes = {str(p.path.resolve()): len(p.annotations) for p in dataset.photos}
    records = list(service._parts.store.records())
    for photo in service._parts.store.photos():  # every photo recorded as done holds all of its logos
        assert sum(r.image_hash == photo.image_hash for r in records) == boxes[photo.path]
    done_before = len(service._parts.store.photos())
    again = import_dataset(service, dataset, batch=2, progress=False)  # the re-run finishes what was lost
    assert again.duplicates == done_before < len(dataset.photos)
    assert len(list(service._parts.store.records())) == sum(boxes.values())  # every box once: none lost, none twice
    assert len(service._parts.store.photos()) == len(dataset.photos)
