"""Bulk import: labelled logo folders (ImageFolder layout), detection datasets, and product photos to annotate.

Bad files never stop an import: each is skipped and reported with its reason.
Files already in the store (same decoded pixels) are skipped, so an import can
be re-run after an interruption without creating duplicates. Photos are
recorded as done in the same transaction as their logos (even a photo where
nothing was found), so a re-run of ``import-photos`` skips them without
decoding them again.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from pipeline import shapes
from pipeline.analysis import PhotoAnalysis
from pipeline.datasets import DetectionDataset
from pipeline.images import ImageError, image_sha256
from pipeline.errors import BadInputError
from pipeline.service import LogoService
from pipeline.store import NewLogo, PhotoRecord
from pipeline.types import LabelSource
from pipeline.util import atomic_write_json

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


@dataclass
class ImportReport:
    """What an import did: ids added, files skipped as duplicates, files that failed and why.

    For photo imports also: photos annotated, photos skipped as done by an earlier run (``resumed``),
    logos given a machine label, and the photos where no logo was found.
    """

    added: list[int] = field(default_factory=list)
    duplicates: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    photos: int = 0
    resumed: int = 0
    labelled: int = 0
    no_logo: list[str] = field(default_factory=list)
    annotated: bool = False  # an auto-annotating photo import: the photo counts are part of its report


def image_files(root: Path) -> Iterator[Path]:
    """Image files under ``root`` (recursive, sorted, hidden files skipped)."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
            yield path


def labelled_files(root: Path) -> list[tuple[Path, str]]:
    """``(file, label)`` pairs of an ImageFolder tree: each subfolder's name is its files' label."""
    root = _require_dir(root)
    return [(path, folder.name) for folder in sorted(p for p in root.iterdir() if p.is_dir())
            for path in image_files(folder)]


def photo_list(source: Path) -> list[Path]:
    """The photos an import should go through: every image under a folder, or those a list file names.

    A list is a CSV file with a ``path`` column (or paths in its first column, without a header) or a JSONL
    file of ``{"path": ...}`` objects or plain strings; relative paths are relative to the list's folder.
    Paths come back absolute, so that a re-run from another folder recognises the photos it has done.

    Raises:
        BadInputError: The source is neither a folder nor a .csv / .jsonl file, or a line is malformed.
    """
    source = Path(source)
    if source.is_dir():
        return [path.resolve() for path in image_files(source)]
    if not source.is_file():
        raise BadInputError(f"{source}: no such folder or file")
    suffix = source.suffix.lower()
    if suffix == ".csv":
        names = _csv_paths(source)
    elif suffix in (".jsonl", ".ndjson"):
        names = _jsonl_paths(source)
    else:
        raise BadInputError(f"{source}: a photo list is a .csv or .jsonl file (or give a folder)")
    return [(source.parent / name).resolve() for name in names]


def _csv_paths(source: Path) -> list[str]:
    with source.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    column = header.index("path") if "path" in header else 0
    body = rows[1:] if "path" in header else rows
    return [row[column].strip() for row in body if len(row) > column and row[column].strip()]


def _jsonl_paths(source: Path) -> list[str]:
    names = []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{source.name} line {number}: not JSON ({exc.msg})") from None
        name = value.get("path") if isinstance(value, dict) else value
        if not isinstance(name, str) or not name:
            raise BadInputError(f"{source.name} line {number}: expected a path string or {{\"path\": ...}}")
        names.append(name)
    return names


def _require_dir(root: Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    return root


def _load_new(service: LogoService, path: Path, report: ImportReport, seen: set[str],
              photos: bool = False) -> tuple[Image.Image, str] | None:
    """Decode ``path`` unless it is broken (recorded in ``report``) or already stored or seen (as logos, or
    with ``photos`` also as a photo done without any)."""
    try:
        image = service.search.load(path)
    except ImageError as exc:
        report.failed.append((str(path), str(exc)))
        return None
    digest = image_sha256(image)
    if digest in seen or service.ingest.has_image(digest) or (photos and service.ingest.has_photo(image_hash=digest)):
        report.duplicates += 1
        return None
    seen.add(digest)
    return image, digest


def import_folder(service: LogoService, root: Path, *, source: LabelSource = LabelSource.HUMAN,
                  batch: int = 64, progress: bool = True,
                  advance: Callable[[int], None] | None = None) -> ImportReport:
    """Add every image of an ImageFolder tree as one logo labelled by its subfolder.

    Args:
        service: Where to add.
        root: Folder whose subfolders are labels and hold logo crops.
        source: Who labelled them (a curated folder is ``human``).
        batch: Crops embedded and committed together.
        progress: Show a progress bar on stderr.
        advance: Told of each file taken (a build's progress, :mod:`pipeline.progress`).
    """
    files = labelled_files(root)
    report = ImportReport()
    pending: list[NewLogo] = []
    seen: set[str] = set()
    for path, label in tqdm(files, desc=f"import {Path(root).name}", unit="logo", disable=not progress):
        if advance:
            advance(1)
        loaded = _load_new(service, path, report, seen)
        if loaded is None:
            continue
        image, digest = loaded
        pending.append(NewLogo(crop=image, image_hash=digest, image_path=str(path), label=label,
                               label_source=source))
        if len(pending) >= batch:
            report.added += service.ingest.crops(pending)
            pending = []
    report.added += service.ingest.crops(pending)
    return report


def import_photos(service: LogoService, source: Path, *, report: Path | None = None, who: str = "local",
                  progress: bool = True, ray: bool = False, workers: int | None = None) -> ImportReport:
    """Auto-annotate photos: detect their logos and store each with its kNN label as a ``machine`` label.

    Args:
        service: Where to add.
        source: A folder of photos, or a CSV / JSONL list of photo paths (:func:`photo_list`).
        report: Also write the report (JSON: counts, photos with no logo, failures) to this file.
        who: Who ran the import, for the label history.
        progress: Show a progress bar on stderr.
        ray: Decode, detect and embed on Ray Data workers (:mod:`pipeline.distributed`; locally, or on the
            cluster ``RAY_ADDRESS`` names); this process searches, names and stores.
        workers: Ray worker actors (default: one per CPU).

    Photos done by an earlier run (same path) are skipped without being read, so an interrupted import
    resumes where it stopped; a photo under a new path with the same pixels is a duplicate.
    """
    result = ImportReport(annotated=True)
    seen: set[str] = set()
    todo = []
    for path in photo_list(source):
        if service.ingest.has_photo(path=str(path)):
            result.resumed += 1
        else:
            todo.append(path)

    def store(path: Path, analysis: PhotoAnalysis) -> None:
        ids = service.ingest.store_analysis(analysis, str(path), who=who)
        result.photos += 1
        result.added += ids
        result.labelled += len(service.labels.current(ids))
        if not ids:
            result.no_logo.append(str(path))

    bar = tqdm(total=len(todo), desc=f"annotate {Path(source).name}", unit="photo", disable=not progress)
    if ray:
        from pipeline.distributed import analyse_on_ray

        for path, analysis, error in analyse_on_ray(service.settings, todo, workers=workers):
            bar.update()
            if analysis is None:
                result.failed.append((path, error))
            elif analysis.image_hash in seen or service.ingest.has_image(analysis.image_hash) or \
                    service.ingest.has_photo(image_hash=analysis.image_hash):
                result.duplicates += 1
            else:
                seen.add(analysis.image_hash)
                store(Path(path), analysis)
    else:
        for path in todo:
            bar.update()
            loaded = _load_new(service, path, result, seen, photos=True)
            if loaded is not None:
                store(path, service.ingest.analyse(*loaded))
    bar.close()
    if report is not None:
        atomic_write_json(Path(report), shapes.import_report(result))
    return result


def import_dataset(service: LogoService, dataset: DetectionDataset, *, source: LabelSource = LabelSource.HUMAN,
                   batch: int = 64, progress: bool = True) -> ImportReport:
    """Add every labelled box of a detection dataset (YOLO or COCO, see :mod:`pipeline.datasets`) as a logo.

    Each box is cut with the service's padding (as a searched logo is), labelled
    with its class and kept with its photo's path and box, so that re-embedding
    can cut it again. Every photo is recorded, those without a box too (an export
    lists them). Photos already stored are skipped as duplicates, which makes a
    re-run after an interruption safe.
    """
    report = ImportReport()
    pending: list[NewLogo] = []
    pending_photos: list[PhotoRecord] = []  # recorded with their logos, in one transaction: never done without them
    seen: set[str] = set()
    for entry in tqdm(dataset.photos, desc=f"import {dataset.root.name}", unit="photo", disable=not progress):
        loaded = _load_new(service, entry.path, report, seen, photos=True)
        if loaded is None:
            continue
        photo, digest = loaded
        pending_photos.append(PhotoRecord(digest, str(Path(entry.path).resolve()), photo.width, photo.height,
                                          len(entry.annotations)))
        pending += [NewLogo(crop=service.ingest.logo_crop(photo, a.box), box=a.box, image_hash=digest,
                            image_path=str(Path(entry.path).resolve()), label=a.label, label_source=source)
                    for a in entry.annotations]
        if len(pending) >= batch:
            report.added += service.ingest.crops(pending, photos=pending_photos)
            pending, pending_photos = [], []
    report.added += service.ingest.crops(pending, photos=pending_photos)
    return report
