"""Bulk import: labelled logo folders (ImageFolder layout), detection datasets, and unlabelled product photos.

Bad files never stop an import: each is skipped and reported with its reason.
Files already in the store (same decoded pixels) are skipped, so an import can
be re-run after an interruption without creating duplicates.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from pipeline.datasets import DetectionDataset
from pipeline.images import ImageError, image_sha256
from pipeline.service import LogoService
from pipeline.store import NewLogo
from pipeline.types import LabelSource

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


@dataclass
class ImportReport:
    """What an import did: ids added, files skipped as duplicates, files that failed and why."""

    added: list[int] = field(default_factory=list)
    duplicates: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"added": len(self.added), "duplicates": self.duplicates,
                "failed": [{"path": path, "error": reason} for path, reason in self.failed]}


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


def _require_dir(root: Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    return root


def _load_new(service: LogoService, path: Path, report: ImportReport,
              seen: set[str]) -> tuple[Image.Image, str] | None:
    """Decode ``path`` unless it is broken (recorded in ``report``) or already stored or seen."""
    try:
        image = service.load(path)
    except ImageError as exc:
        report.failed.append((str(path), str(exc)))
        return None
    digest = image_sha256(image)
    if digest in seen or service.store.has_image(digest):
        report.duplicates += 1
        return None
    seen.add(digest)
    return image, digest


def import_folder(service: LogoService, root: Path, *, source: LabelSource = LabelSource.HUMAN,
                  batch: int = 64, progress: bool = True) -> ImportReport:
    """Add every image of an ImageFolder tree as one logo labelled by its subfolder.

    Args:
        service: Where to add.
        root: Folder whose subfolders are labels and hold logo crops.
        source: Who labelled them (a curated folder is ``human``).
        batch: Crops embedded and committed together.
        progress: Show a progress bar on stderr.
    """
    files = labelled_files(root)
    report = ImportReport()
    pending: list[NewLogo] = []
    seen: set[str] = set()
    for path, label in tqdm(files, desc=f"import {Path(root).name}", unit="logo", disable=not progress):
        loaded = _load_new(service, path, report, seen)
        if loaded is None:
            continue
        image, digest = loaded
        pending.append(NewLogo(crop=image, image_hash=digest, image_path=str(path), label=label,
                               label_source=source))
        if len(pending) >= batch:
            report.added += service.add_crops(pending)
            pending = []
    report.added += service.add_crops(pending)
    return report


def import_photos(service: LogoService, root: Path, *, progress: bool = True) -> ImportReport:
    """Detect the logos of every photo under ``root`` and add them unlabelled."""
    report = ImportReport()
    seen: set[str] = set()
    for path in tqdm(list(image_files(_require_dir(root))), desc=f"import {Path(root).name}", unit="photo",
                     disable=not progress):
        loaded = _load_new(service, path, report, seen)
        if loaded is None:
            continue
        photo, digest = loaded
        detections = service.detect(photo)
        report.added += service.add_crops([
            NewLogo(crop=service.logo_crop(photo, d.box), box=d.box, image_hash=digest, image_path=str(path), score=d.score)
            for d in detections
        ])
    return report


def import_dataset(service: LogoService, dataset: DetectionDataset, *, source: LabelSource = LabelSource.HUMAN,
                   batch: int = 64, progress: bool = True) -> ImportReport:
    """Add every labelled box of a detection dataset (YOLO or COCO, see :mod:`pipeline.datasets`) as a logo.

    Each box is cut with the service's padding (as a searched logo is), labelled
    with its class and kept with its photo's path and box, so that re-embedding
    can cut it again. Photos already stored are skipped as duplicates, which
    makes a re-run after an interruption safe.
    """
    report = ImportReport()
    pending: list[NewLogo] = []
    seen: set[str] = set()
    for entry in tqdm(dataset.photos, desc=f"import {dataset.root.name}", unit="photo", disable=not progress):
        if not entry.annotations:
            continue
        loaded = _load_new(service, entry.path, report, seen)
        if loaded is None:
            continue
        photo, digest = loaded
        pending += [NewLogo(crop=service.logo_crop(photo, a.box), box=a.box, image_hash=digest,
                            image_path=str(entry.path), label=a.label, label_source=source)
                    for a in entry.annotations]
        if len(pending) >= batch:
            report.added += service.add_crops(pending)
            pending = []
    report.added += service.add_crops(pending)
    return report
