"""End to end on real logos: import a folder, build, search photos; the CLI's public JSON shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pipeline.cli import run
from pipeline.importing import import_folder, import_photos
from pipeline.errors import LogoNotFoundError
from pipeline.service import LogoService
from pipeline.types import LabelSource
from tests.conftest import BRANDS, ROOT



@pytest.fixture
def filled(service: LogoService, gallery_dir: Path) -> LogoService:
    report = import_folder(service, gallery_dir, progress=False)
    assert len(report.added) == 3 * len(BRANDS) and not report.failed
    service.maintenance.build_index()
    return service


def test_held_out_photos_are_named(filled, query_images):
    right = sum(filled.search.photo(path).logos[0].prediction.label == brand for brand, path in query_images.items())
    assert right >= len(BRANDS) - 1


def test_search_photo_with_boxes_reports_original_coordinates(filled, query_images):
    logo = Image.open(query_images["Starbucks"]).convert("RGB")
    poster = Image.new("RGB", (logo.width * 3, logo.height * 2), "white")
    poster.paste(logo, (logo.width * 2, logo.height))
    box = [logo.width * 2, logo.height, logo.width * 3, logo.height * 2]
    result = filled.search.photo(poster, boxes=[box, [0, 0, 10_000, 20]])
    assert result.logos[0].box.to_list() == [float(v) for v in box]
    assert result.logos[0].prediction.label == "Starbucks"
    assert result.logos[1].box.to_list() == [0.0, 0.0, float(poster.width), 20.0]  # clipped
    with pytest.raises(ValueError, match="outside"):
        filled.search.photo(poster, boxes=[[5000, 5000, 6000, 6000]])


def test_add_is_searchable_at_once_and_labels_apply(filled, query_images):
    before = filled.insight.stats()
    ids = filled.ingest.photo(query_images["KFC"], labels=["KFC"])
    stats = filled.insight.stats()
    assert stats.logos == before.logos + 1 and stats.pending == 1
    assert filled.search.logo(ids[0], k=3)[0].label == "KFC"
    neighbours = filled.search.photo(query_images["KFC"]).logos[0].neighbours
    assert neighbours[0].id == ids[0] and neighbours[0].distance < 1e-3
    assert filled.labels.set(ids, "Kentucky", LabelSource.MACHINE).ids == []  # human label stays
    assert filled.labels.set(ids, "Kentucky", LabelSource.HUMAN).ids == ids
    assert filled._parts.store.get(ids)[0].label == "Kentucky"
    with pytest.raises(LogoNotFoundError):
        filled.search.logo(10_000)
    with pytest.raises(ValueError, match="labels for"):
        filled.ingest.photo(query_images["KFC"], labels=["a", "b"])


def test_import_skips_duplicates_and_reports_bad_files(service, gallery_dir, tmp_path):
    broken = tmp_path / "tree" / "Broken"
    broken.mkdir(parents=True)
    (broken / "zero.png").write_bytes(b"")
    (broken / "text.jpg").write_text("hello")
    assert import_folder(service, gallery_dir, progress=False).added
    again = import_folder(service, gallery_dir, progress=False)
    assert again.added == [] and again.duplicates == 3 * len(BRANDS)
    bad = import_folder(service, tmp_path / "tree", progress=False)
    assert bad.added == [] and sorted(Path(p).name for p, _ in bad.failed) == ["text.jpg", "zero.png"]
    photos = import_photos(service, gallery_dir / "Lidl", progress=False)
    assert photos.duplicates == 3  # same pixels as the labelled import


def test_cli_search_json_contract(filled, query_images, capsys):
    code = run(["--data-dir", str(filled.settings.data_dir), "--detector", "whole-image", "search",
                str(query_images["Lidl"]), "--json", "-k", "3"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert list(result) == ["logos"]
    (logo,) = result["logos"]
    width, height = Image.open(query_images["Lidl"]).size
    assert set(logo) == {"box", "label", "confidence", "neighbours", "text"}
    assert logo["box"] == [0, 0, width, height] and logo["label"] == "Lidl"
    assert 0 < logo["confidence"] <= 1 and len(logo["neighbours"]) == 3
    assert all(set(n) == {"id", "label", "distance"} for n in logo["neighbours"])
    assert [n["distance"] for n in logo["neighbours"]] == sorted(n["distance"] for n in logo["neighbours"])


def test_cli_bad_image_is_a_clear_error(filled, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert run(["--data-dir", str(filled.settings.data_dir), "search", str(bad)]) == 1
    assert capsys.readouterr().err.startswith("error: the file is not an image")


def test_cli_end_to_end_in_a_subprocess(gallery_dir, query_images, tmp_path):
    """import-folder, build-index, stats and evaluate through ``python -m pipeline``."""
    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "pipeline", "-q", "--data-dir", str(tmp_path / "d"), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    assert json.loads(cli("import-folder", str(gallery_dir)))["added"] == 3 * len(BRANDS)
    assert json.loads(cli("build-index"))["count"] == 3 * len(BRANDS)
    stats = json.loads(cli("stats", "--json"))
    assert stats["logos"] == stats["indexed"] == 18 and stats["labels"] == len(BRANDS) and stats["pending"] == 0
    queries = tmp_path / "queries"
    for brand, path in query_images.items():
        (queries / brand).mkdir(parents=True)
        (queries / brand / path.name).write_bytes(path.read_bytes())
    figures = json.loads(cli("evaluate", str(gallery_dir), str(queries), "--json"))
    assert {"top1", "recall@5"} <= set(figures)
    assert figures["queries"] == len(BRANDS) and figures["top1"] >= 0.8 and figures["recall@5"] == 1.0


def _yolo_dataset(root: Path, query_images: dict[str, Path]) -> list[tuple[str, list[float]]]:
    """Two 'photos' with demo logos pasted at known places, plus one without any logo, in YOLO layout."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    classes = list(query_images)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    truth = []
    for number, brands in enumerate([["KFC", "Shell"], ["Lidl"], []]):
        canvas = Image.new("RGB", (640, 480), (235, 230, 220))
        lines = []
        for slot, brand in enumerate(brands):
            logo = Image.open(query_images[brand]).convert("RGB")
            logo.thumbnail((200, 200))
            x, y = 40 + 300 * slot, 120
            canvas.paste(logo, (x, y))
            box = [x, y, x + logo.width, y + logo.height]
            truth.append((brand, box))
            lines.append(f"{classes.index(brand)} {(x + logo.width / 2) / 640} {(y + logo.height / 2) / 480} "
                         f"{logo.width / 640} {logo.height / 480}")
        canvas.save(root / "images" / f"photo{number}.jpg", quality=95)
        (root / "labels" / f"photo{number}.txt").write_text("\n".join(lines))
    return truth


def test_cli_import_dataset_adds_each_box_with_its_label_once(service, query_images, tmp_path, capsys):
    truth = _yolo_dataset(tmp_path / "ds", query_images)
    data = str(service.settings.data_dir)
    assert run(["--data-dir", data, "-q", "import-dataset", str(tmp_path / "ds"), "--format", "yolo"]) == 0
    assert json.loads(capsys.readouterr().out) == {"added": 3, "duplicates": 0, "failed": []}
    records = service._parts.store.get(service._parts.store.ids())
    assert sorted((r.label, [round(v) for v in r.box.to_list()]) for r in records) == sorted(truth)
    assert {r.label_source for r in records} == {LabelSource.HUMAN}
    assert run(["--data-dir", data, "-q", "import-dataset", str(tmp_path / "ds"), "--format", "yolo"]) == 0
    # every photo was recorded, the one without a box too: a re-run finds all three done
    assert json.loads(capsys.readouterr().out)["duplicates"] == 3 and service._parts.store.count() == 3
    (tmp_path / "ds" / "labels" / "photo1.txt").write_text("0 0.5 0.5 0.2\n")
    assert run(["--data-dir", data, "-q", "import-dataset", str(tmp_path / "ds"), "--format", "yolo"]) == 1
    assert "photo1.txt line 1" in capsys.readouterr().err
