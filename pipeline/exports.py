"""Exports: the store's photos, boxes and labels in the formats other tools read.

A labelled store is worth most outside this app: in a detector's training run, in
an annotation tool, in a spreadsheet. Four shapes, one registry (:data:`EXPORTERS`):

* ``coco``: one JSON (``annotations.json``) with every recorded photo, those
  without a logo too, boxes in pixels of the original photo (``[x, y, w, h]``),
  one category per label; photos copied (hard-linked where possible) to ``images/``.
* ``yolo``: ``images/``, ``labels/*.txt`` (``class cx cy w h`` normalised; an empty
  file for a photo without a logo), ``data.yaml`` and ``classes.txt``.
* ``labelme``: one LabelMe JSON per photo (rectangles), beside ``images/``.
* ``csv`` (or ``parquet`` when pyarrow is installed): one row per logo: id, photo
  (its file name: an export never carries the server's folders), box, label, source,
  confidence, detector score, optionally its embedding. CSV cells that a spreadsheet
  would run as a formula start with ``'`` (:func:`spreadsheet_safe`).

COCO and YOLO exports read back with :mod:`pipeline.datasets` (``import-dataset``).
A folder export is built beside ``out`` and renamed into place at the end, and a
file export is written atomically: an interrupted export leaves nothing half-made.
Photos come only from the store's photo records (``import-photos``,
``import-dataset``); logos added as bare crops have no photo and appear in the
table exports only.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.errors import BadInputError
from pipeline.store import LogoStore, PhotoRecord
from pipeline.types import LabelSource, LogoRecord
from pipeline.registry import Registry
from pipeline.util import atomic_write_bytes


@dataclass(frozen=True)
class ExportOptions:
    """Which logos an export keeps.

    Attributes:
        human_only: Only labels people set or accepted (``human``); machine proposals are left out (their
            logos count as unlabelled).
        labels: Only these labels (None: all).
        unlabelled: Table exports also list logos without a label (box exports never draw them).
        embeddings: Table exports add each logo's vector.
    """

    human_only: bool = False
    labels: frozenset[str] | None = None
    unlabelled: bool = False
    embeddings: bool = False

    def keeps(self, record: LogoRecord) -> bool:
        """Whether the logo's label goes into the export."""
        if record.label is None:
            return False
        if self.human_only and record.label_source is not LabelSource.HUMAN:
            return False
        return self.labels is None or record.label in self.labels


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote (``to_json`` is the CLI's output shape)."""

    format: str
    out: str
    photos: int
    logos: int
    labels: int
    skipped_photos: tuple[str, ...]  # recorded photos whose file is gone (not exported)


@dataclass(frozen=True)
class _Photo:
    record: PhotoRecord
    name: str  # file name under images/
    logos: tuple[LogoRecord, ...]


def _photos(store: LogoStore, options: ExportOptions) -> tuple[list[_Photo], list[str], list[str]]:
    """Recorded photos whose file still exists, with their kept logos; the classes; the skipped photos."""
    by_hash: dict[str, list[LogoRecord]] = {}
    for record in store.records():
        if record.image_hash and record.box is not None and options.keeps(record):
            by_hash.setdefault(record.image_hash, []).append(record)
    photos, skipped, stems = [], [], set()
    for photo in store.photos():
        if not photo.path or not Path(photo.path).is_file():
            skipped.append(photo.path or photo.image_hash)
            continue
        source = Path(photo.path)
        stem = source.stem if source.stem not in stems else f"{source.stem}-{photo.image_hash[:10]}"
        stems.add(stem)  # YOLO pairs images/STEM.* with labels/STEM.txt: stems must differ
        name = f"{stem}{source.suffix}"
        photos.append(_Photo(photo, name, tuple(by_hash.get(photo.image_hash, ()))))
    classes = sorted({logo.label for photo in photos for logo in photo.logos if logo.label})
    return photos, classes, skipped


def _link(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (no copy of millions of bytes), copying across file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _write_coco(photos: list[_Photo], classes: list[str], out: Path) -> None:
    category = {label: number for number, label in enumerate(classes, 1)}
    images, annotations = [], []
    for number, photo in enumerate(photos, 1):
        images.append({"id": number, "file_name": f"images/{photo.name}", "width": photo.record.width,
                       "height": photo.record.height})
        for logo in photo.logos:
            box = logo.box
            annotations.append({
                "id": len(annotations) + 1, "image_id": number, "category_id": category[logo.label],
                "bbox": [round(box.x0, 2), round(box.y0, 2), round(box.width, 2), round(box.height, 2)],
                "area": round(box.area, 2), "iscrowd": 0,
                "attributes": {"logo_id": logo.id, "source": logo.label_source.value if logo.label_source else None,
                               "confidence": logo.confidence}})
    data = {"info": {"description": "logo annotations exported by the logo search app"},
            "images": images, "annotations": annotations,
            "categories": [{"id": number, "name": label, "supercategory": "logo"}
                           for label, number in category.items()]}
    (out / "annotations.json").write_text(json.dumps(data, indent=1), encoding="utf-8")


def _write_yolo(photos: list[_Photo], classes: list[str], out: Path) -> None:
    number = {label: n for n, label in enumerate(classes)}
    (out / "labels").mkdir()
    for photo in photos:
        width, height = photo.record.width, photo.record.height
        lines = [f"{number[logo.label]} {(logo.box.x0 + logo.box.x1) / 2 / width:.6f} "
                 f"{(logo.box.y0 + logo.box.y1) / 2 / height:.6f} {logo.box.width / width:.6f} "
                 f"{logo.box.height / height:.6f}" for logo in photo.logos]
        (out / "labels" / f"{Path(photo.name).stem}.txt").write_text("".join(f"{line}\n" for line in lines))
    (out / "classes.txt").write_text("".join(f"{label}\n" for label in classes), encoding="utf-8")
    (out / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images", "val": "images",
                                                   "names": dict(enumerate(classes))}, sort_keys=False,
                                                  allow_unicode=True), encoding="utf-8")


def _write_labelme(photos: list[_Photo], classes: list[str], out: Path) -> None:
    del classes  # LabelMe names labels on each shape
    for photo in photos:
        shapes = [{"label": logo.label, "points": [[logo.box.x0, logo.box.y0], [logo.box.x1, logo.box.y1]],
                   "group_id": None, "description": "", "shape_type": "rectangle",
                   "flags": {"machine": logo.label_source is LabelSource.MACHINE}} for logo in photo.logos]
        document = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": f"images/{photo.name}",
                    "imageData": None, "imageHeight": photo.record.height, "imageWidth": photo.record.width}
        (out / f"{Path(photo.name).stem}.json").write_text(json.dumps(document, indent=1), encoding="utf-8")


def _folder_export(writer: Callable[[list[_Photo], list[str], Path], None]) -> Callable[..., ExportReport]:
    def export(store: LogoStore, out: Path, options: ExportOptions, fmt: str) -> ExportReport:
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise BadInputError(f"{out} already exists and is not an empty folder; export to a new one")
        photos, classes, skipped = _photos(store, options)
        out.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        try:
            (building / "images").mkdir()
            for photo in photos:
                _link(Path(photo.record.path), building / "images" / photo.name)
            writer(photos, classes, building)
            if out.exists():
                out.rmdir()
            building.rename(out)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        return ExportReport(fmt, str(out), len(photos), sum(len(p.logos) for p in photos), len(classes),
                            tuple(skipped))
    return export


TABLE_COLUMNS = ("id", "photo", "image_hash", "x0", "y0", "x1", "y1", "label", "source", "confidence", "score")


# a spreadsheet reads a cell starting with one of these as a formula (OWASP: CSV injection)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A CSV cell that no spreadsheet runs: text that would start a formula gets a leading ``'`` (OWASP's rule).

    Example:
        >>> spreadsheet_safe("=1+2"), spreadsheet_safe("Coca-Cola"), spreadsheet_safe(-1.5)
        ("'=1+2", 'Coca-Cola', -1.5)
    """
    return f"'{value}" if isinstance(value, str) and value.startswith(_FORMULA_STARTS) else value


def _rows(store: LogoStore, options: ExportOptions) -> Iterator[dict[str, object]]:
    for record in store.records():
        kept = options.keeps(record)
        if not kept and not options.unlabelled:
            continue
        box = record.box.to_list() if record.box else [None] * 4
        row: dict[str, object] = {
            "id": record.id, "photo": Path(record.image_path).name if record.image_path else None,
            "image_hash": record.image_hash,
            "x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3],
            "label": record.label if kept else None,
            "source": record.label_source.value if kept and record.label_source else None,
            "confidence": record.confidence if kept else None, "score": record.score}
        if options.embeddings:
            row["embedding"] = [round(float(v), 6) for v in store.vectors([record.id])[0]]
        yield row


def _export_table(store: LogoStore, out: Path, options: ExportOptions, fmt: str) -> ExportReport:
    out = Path(out)
    rows = list(_rows(store, options))
    if fmt == "parquet":
        try:
            import pandas as pd
            import pyarrow  # noqa: F401 - pandas needs it for Parquet
        except ImportError:
            raise BadInputError("Parquet needs pyarrow (pip install pyarrow); use --format csv otherwise") from None
        buffer = io.BytesIO()
        pd.DataFrame(rows, columns=[*TABLE_COLUMNS, *(["embedding"] if options.embeddings else [])]).to_parquet(
            buffer, index=False)
        data = buffer.getvalue()
    else:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=[*TABLE_COLUMNS, *(["embedding"] if options.embeddings else [])])
        writer.writeheader()
        for row in rows:
            if options.embeddings:
                row = {**row, "embedding": json.dumps(row["embedding"])}
            writer.writerow({key: spreadsheet_safe(value) for key, value in row.items()})
        data = text.getvalue().encode("utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, data)
    labels = {row["label"] for row in rows if row["label"]}
    return ExportReport(fmt, str(out), len({row["image_hash"] for row in rows if row["image_hash"]}), len(rows),
                        len(labels), ())


TABLE_FORMATS = frozenset({"csv", "parquet"})
EXPORTERS = Registry[Callable[[LogoStore, Path, ExportOptions, str], ExportReport]]("export format", BadInputError)
EXPORTERS.register("coco", _folder_export(_write_coco), "COCO annotations.json and images/")
EXPORTERS.register("yolo", _folder_export(_write_yolo), "YOLO images/, labels/, data.yaml")
EXPORTERS.register("labelme", _folder_export(_write_labelme), "a LabelMe JSON per photo beside images/")
EXPORTERS.register("csv", _export_table, "one row per logo")
EXPORTERS.register("parquet", _export_table, "one row per logo (needs pyarrow)")


def export_archive(store: LogoStore, fmt: str, options: ExportOptions | None = None,
                   workdir: Path | None = None) -> tuple[Path, ExportReport]:
    """The export as one ZIP file (a folder format zipped, a table as is) under a new temporary folder.

    For downloads: the caller serves the file and removes its folder (``path.parent``) afterwards.
    """
    folder = Path(tempfile.mkdtemp(prefix="logo-export-", dir=workdir))
    try:
        target = folder / (f"logos.{fmt}" if fmt in TABLE_FORMATS else f"logos-{fmt}")
        report = export_store(store, fmt, target, options)
        archive = Path(shutil.make_archive(str(folder / f"logos-{fmt}"), "zip", root_dir=folder,
                                           base_dir=target.name))
        return archive, report
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def export_store(store: LogoStore, fmt: str, out: Path, options: ExportOptions | None = None) -> ExportReport:
    """Write the store's photos, boxes and labels to ``out`` in format ``fmt`` (a key of :data:`EXPORTERS`).

    Args:
        store: The store to export.
        fmt: ``coco``, ``yolo`` or ``labelme`` (``out`` is a new or empty folder), ``csv`` or ``parquet``
            (``out`` is a file).
        out: Where to write.
        options: Which logos to keep (default: every labelled logo).

    Raises:
        BadInputError: An unknown format, or ``out`` is taken.

    Example:
        >>> import tempfile, numpy as np
        >>> from pipeline.store import NewLogo
        >>> store = LogoStore(tempfile.mkdtemp())
        >>> _ = store.add([NewLogo(label="acme", label_source=LabelSource.HUMAN)], np.eye(1, 4, dtype=np.float32),
        ...               model_id="demo")
        >>> export_store(store, "csv", Path(tempfile.mkdtemp()) / "logos.csv").logos
        1
    """
    return EXPORTERS.get(fmt)(store, Path(out), options or ExportOptions(), fmt)
