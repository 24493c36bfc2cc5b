"""Object-detection datasets (YOLO txt, COCO JSON) read into one shape: photos, pixel boxes, labels.

Detector training, the benchmarks and the store import all need "these photos, with
these logo boxes"; datasets arrive in either of the two common exchange formats.
Both are read into the same frozen :class:`DetectionDataset`, with boxes as
:class:`~pipeline.types.Box` in pixels of the stored image, so that nothing
downstream knows which format a dataset came in.

Datasets are written by hand or by half-broken exporters, so reading is strict:
anything malformed is a :class:`~pipeline.errors.DatasetError` whose message names
the file and the line (YOLO) or the JSON path (COCO), rather than a box silently
dropped or misplaced. Photos without any box are kept: they are the negatives a
detector needs, and a COCO export must be able to list them.

Image sizes are read from the file header only (no decode), so boxes are relative to
the stored pixel orientation, ignoring any EXIF orientation tag: that is what YOLO
and COCO tools annotate. Datasets should be EXIF-rotated before labelling (the
real-drinks dataset is).
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from pipeline.errors import DatasetError
from pipeline.registry import Registry
from pipeline.types import Box

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

# Annotation tools round box edges to whole pixels, so an edge may stray up to a pixel outside the image (real-drinks
# has two such boxes); those boxes are clipped, further out is an error. The 1e-6 forgives float noise.
PIXEL_SLACK = 1.0 + 1e-6


@dataclass(frozen=True)
class Annotation:
    """One labelled box on a photo, in pixels of the stored image."""

    box: Box
    label: str


@dataclass(frozen=True)
class DatasetPhoto:
    """A photo and its boxes; no annotations means a photo without any logo (a negative).

    ``split`` is the first folder under ``images/`` in the Ultralytics layout
    (``images/train/...``), where the dataset's authors chose the split; None otherwise.
    """

    path: Path
    width: int
    height: int
    annotations: tuple[Annotation, ...] = ()
    split: str | None = None


def real_drinks_split(stem: str) -> str:
    """The published split of the real-drinks dataset: ``"test"``, ``"val"`` or ``"train"``.

    Fixed by ``zlib.crc32(stem) % 10`` (0-1 test, 2 val, 3-9 train; see the dataset's
    README), so that every script holds out the same photos and the test part stays unseen.

    Example:
        >>> real_drinks_split("Aquafina-0002"), real_drinks_split("Aquafina-0006")
        ('train', 'test')
    """
    bucket = zlib.crc32(stem.encode()) % 10
    return "test" if bucket < 2 else "val" if bucket == 2 else "train"


@dataclass(frozen=True)
class DetectionDataset:
    """Photos with labelled boxes; ``root`` is the folder (YOLO) or JSON file (COCO) it was read from."""

    root: Path
    format: str
    classes: tuple[str, ...]
    photos: tuple[DatasetPhoto, ...]

    def split(
        self, names: str | Iterable[str], split_of: Callable[[str], str] | None = real_drinks_split
    ) -> DetectionDataset:
        """The photos whose split is one of ``names`` (one name or several), as a dataset of their own.

        ``split_of`` maps a file stem to its split; None uses the folder split of the
        Ultralytics layout (:attr:`DatasetPhoto.split`) instead.
        """
        wanted = {names} if isinstance(names, str) else set(names)
        if split_of is None:
            unsplit = [photo.path for photo in self.photos if photo.split is None]
            if unsplit:
                raise DatasetError(f"{unsplit[0]}: not in a split folder (images/<split>/), pass a split_of function")
            photos = tuple(photo for photo in self.photos if photo.split in wanted)
        else:
            photos = tuple(photo for photo in self.photos if split_of(photo.path.stem) in wanted)
        return replace(self, photos=photos)

    def showing(self, labels: Iterable[str], *, only: bool = True) -> DetectionDataset:
        """The photos with a box of one of ``labels`` (``only=False``: the photos with none of them).

        A brand-held-out protocol trains on the photos of some brands and judges on the others': a photo
        that shows a held-out brand anywhere stays out of training whole, or the model learns that brand
        from it (as a logo, or, unboxed, as background).

        Example:
            >>> from pipeline.types import Box
            >>> photo = DatasetPhoto(Path("a.jpg"), 640, 480, (Annotation(Box(0.0, 0.0, 9.0, 9.0), "Lavie"),))
            >>> data = DetectionDataset(Path("."), "yolo", ("Lavie", "Coca"), (photo,))
            >>> len(data.showing(["Lavie"]).photos), len(data.showing(["Lavie"], only=False).photos)
            (1, 0)
        """
        wanted = set(labels)
        return replace(self, photos=tuple(photo for photo in self.photos
                                          if any(a.label in wanted for a in photo.annotations) == only))


def load_yolo(root: Path, classes: Sequence[str] | None = None, *, skip_empty_boxes: bool = False) -> DetectionDataset:
    """Read a YOLO dataset: ``images/``, ``labels/`` and class names, flat or in split folders.

    Each ``labels/<path>.txt`` belongs to the image at the same relative path under
    ``images/`` (``images/train/a.jpg`` <-> ``labels/train/a.txt``); a line is
    ``class cx cy w h``, normalised to [0, 1]. An image without a label file, or with an
    empty one, is a photo without a logo. Class names come from ``classes`` if given,
    else ``classes.txt`` (one per line, index = class id), else ``data.yaml``
    (``names:`` as a list or an ``{id: name}`` mapping). ``skip_empty_boxes`` drops boxes
    with less than a pixel inside the image (the zero-size points a click without a drag
    leaves; real-drinks has two) instead of refusing the dataset.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     root = Path(tmp)
        ...     (root / "images").mkdir(); (root / "labels").mkdir()
        ...     Image.new("RGB", (100, 50)).save(root / "images" / "can.jpg")
        ...     _ = (root / "labels" / "can.txt").write_text("0 0.5 0.5 0.2 0.4\\n")
        ...     dataset = load_yolo(root, classes=["Coca"])
        >>> dataset.photos[0].annotations
        (Annotation(box=Box(x0=40.0, y0=15.0, x1=60.0, y1=35.0), label='Coca'),)
    """
    root = Path(root)
    images_dir, labels_dir = root / "images", root / "labels"
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: no such folder (a YOLO dataset has images/ and labels/)")
    names = _yolo_classes(root) if classes is None else _unique(list(classes), "classes")
    if not names:
        raise DatasetError(f"{root}: no class names")
    images: dict[Path, Path] = {}
    for path in _files(images_dir):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            key = path.relative_to(images_dir).with_suffix("")
            if key in images:
                raise DatasetError(f"{_rel(path, root)}: same name as {_rel(images[key], root)}, "
                                   "so a label file cannot tell them apart")
            images[key] = path
    if not images:
        raise DatasetError(f"{images_dir}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    labels = {path.relative_to(labels_dir).with_suffix(""): path
              for path in _files(labels_dir) if path.suffix == ".txt"}
    for key, label_path in sorted(labels.items()):
        if key not in images:
            raise DatasetError(f"{_rel(label_path, root)}: no image images/{key.as_posix()}.* for this label file")
    photos = []
    for key, path in sorted(images.items()):
        width, height = _image_size(path, _rel(path, root))
        annotations = (_read_yolo_labels(labels[key], root, names, width, height, skip_empty_boxes)
                       if key in labels else ())
        split = key.parts[0] if len(key.parts) > 1 else None
        photos.append(DatasetPhoto(path, width, height, annotations, split))
    return DetectionDataset(root, "yolo", names, tuple(photos))


def load_coco(path: Path, image_root: Path | None = None, *, skip_empty_boxes: bool = False) -> DetectionDataset:
    """Read a COCO detection JSON: ``images``, ``annotations`` (``bbox`` = x, y, w, h in pixels), ``categories``.

    Images are looked up under ``image_root``, by default next to the JSON file or in
    an ``images/`` folder beside it. Classes are the category names in id order;
    ``iscrowd`` and segmentations are ignored. Image sizes in the JSON must match the
    files, since the boxes are in pixels of those sizes. ``skip_empty_boxes`` is as in
    :func:`load_yolo`.
    """
    path = Path(path)
    name = path.name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{name}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{name}: cannot be read ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{name}: expected a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{name}: {key} must be a list")
    categories = _coco_categories(data["categories"], name)
    roots = [Path(image_root)] if image_root is not None else [path.parent, path.parent / "images"]
    images: dict[int | str, tuple[Path, int, int]] = {}
    for i, entry in enumerate(data["images"]):
        where = f"{name} images[{i}]"
        image_id = _coco_id(entry, where)
        where = f"{where} (id {image_id})"
        if image_id in images:
            raise DatasetError(f"{where}: duplicate image id")
        file_name = entry.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise DatasetError(f"{where}: file_name must be a non-empty string")
        candidates = [folder / file_name for folder in roots]
        found = next((candidate for candidate in candidates if candidate.is_file()), None)
        if found is None:
            raise DatasetError(f"{where}: image file not found: {', '.join(str(c) for c in candidates)}")
        width, height = _image_size(found, str(found))
        if (entry.get("width", width), entry.get("height", height)) != (width, height):
            raise DatasetError(f"{where}: width/height {entry.get('width')}x{entry.get('height')} "
                               f"but {file_name} is {width}x{height}")
        images[image_id] = (found, width, height)
    if not images:
        raise DatasetError(f"{name}: no images")
    boxes: dict[int | str, list[Annotation]] = {image_id: [] for image_id in images}
    for i, entry in enumerate(data["annotations"]):
        where = f"{name} annotations[{i}]"
        if not isinstance(entry, dict):
            raise DatasetError(f"{where}: expected an object")
        if "id" in entry:
            where = f"{where} (id {entry['id']})"
        image_id, category_id = entry.get("image_id"), entry.get("category_id")
        if image_id not in images:
            raise DatasetError(f"{where}: unknown image_id {image_id!r}")
        if category_id not in categories:
            raise DatasetError(f"{where}: unknown category_id {category_id!r}")
        _, width, height = images[image_id]
        box = _coco_box(entry.get("bbox"), width, height, where, skip_empty_boxes)
        if box is not None:
            boxes[image_id].append(Annotation(box, categories[category_id]))
    photos = sorted((DatasetPhoto(found, width, height, tuple(boxes[image_id]))
                     for image_id, (found, width, height) in images.items()), key=lambda photo: photo.path)
    return DetectionDataset(path, "coco", tuple(categories.values()), tuple(photos))


LOADERS = Registry[Callable[..., DetectionDataset]]("dataset format", DatasetError)
LOADERS.register("yolo", load_yolo, "a folder with images/, labels/ and classes.txt or data.yaml")
LOADERS.register("coco", load_coco, "a COCO JSON file")


def load_dataset(path: Path, format: str, *, skip_empty_boxes: bool = False) -> DetectionDataset:
    """Read a dataset in a format named by the caller (``yolo``: a folder, ``coco``: a JSON file)."""
    return LOADERS.get(format)(Path(path), skip_empty_boxes=skip_empty_boxes)


def _rel(path: Path, root: Path) -> str:
    """A dataset file as its messages name it: relative to the dataset root, as the user sees the layout."""
    return path.relative_to(root).as_posix()


def _files(folder: Path) -> list[Path]:
    """Every file under ``folder``, skipping hidden ones (``.DS_Store``, macOS ``._*`` forks)."""
    return sorted(path for path in folder.rglob("*")
                  if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts))


def _image_size(path: Path, shown: str) -> tuple[int, int]:
    """Width and height from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{shown}: not an image that can be read ({exc})") from None
    if width <= 0 or height <= 0:
        raise DatasetError(f"{shown}: the image has no pixels")
    return width, height


def _read_text(path: Path, shown: str) -> str:
    """A text file's contents; ``utf-8-sig`` because Windows tools start label files with a byte-order mark."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{shown}: cannot be read as UTF-8 text ({exc})") from None


def _yolo_classes(root: Path) -> tuple[str, ...]:
    """Class names from ``classes.txt`` or else ``data.yaml``, with the id of each name its index."""
    if (root / "classes.txt").is_file():
        lines = _read_text(root / "classes.txt", "classes.txt").splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                raise DatasetError(f"classes.txt line {number}: empty class name (it would shift every later id)")
        return _unique([line.strip() for line in lines], "classes.txt")
    if (root / "data.yaml").is_file():
        return _yaml_classes(root / "data.yaml")
    raise DatasetError(f"{root}: no classes.txt or data.yaml to name the classes")


def _yaml_classes(path: Path) -> tuple[str, ...]:
    """The ``names:`` of an Ultralytics ``data.yaml``: a list, or a mapping from ids 0..n-1 to names."""
    try:
        data = yaml.safe_load(_read_text(path, "data.yaml"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise DatasetError(f"data.yaml: invalid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise DatasetError(f"data.yaml: names must map the ids 0..{len(names) - 1}, got ids {list(names)}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list):
        raise DatasetError("data.yaml: names must be a list or an {id: name} mapping")
    for i, value in enumerate(names):
        if not isinstance(value, str) or not value.strip():
            raise DatasetError(f"data.yaml: names[{i}] must be a non-empty string, got {value!r} (quote it)")
    if "nc" in data and data["nc"] != len(names):
        raise DatasetError(f"data.yaml: nc is {data['nc']!r} but names lists {len(names)} classes")
    return _unique([value.strip() for value in names], "data.yaml")


def _unique(names: list[str], shown: str) -> tuple[str, ...]:
    """Class names as a tuple, refusing duplicates: two ids with one name would merge two classes."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DatasetError(f"{shown}: class name {name!r} appears twice")
        seen.add(name)
    return tuple(names)


def _read_yolo_labels(
    path: Path, root: Path, classes: tuple[str, ...], width: int, height: int, skip_empty_boxes: bool
) -> tuple[Annotation, ...]:
    """The boxes of one label file, in pixels of a ``width`` x ``height`` image."""
    shown = _rel(path, root)
    annotations = []
    for number, line in enumerate(_read_text(path, shown).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{shown} line {number}"
        if len(fields) != 5:
            hint = " (a segmentation polygon? only boxes are supported)" if len(fields) > 5 else ""
            got = line.strip() if len(line.strip()) <= 60 else line.strip()[:57] + "..."
            raise DatasetError(f"{where}: expected 'class cx cy w h', got {got!r}{hint}")
        try:
            class_id = int(fields[0])
        except ValueError:
            raise DatasetError(f"{where}: class id must be an integer, got {fields[0]!r}") from None
        if not 0 <= class_id < len(classes):
            raise DatasetError(f"{where}: class id {class_id} out of range (0-{len(classes) - 1}, "
                               f"{len(classes)} classes)")
        values = []
        for field_name, text in zip(("cx", "cy", "w", "h"), fields[1:]):
            try:
                value = float(text)
            except ValueError:
                raise DatasetError(f"{where}: {field_name} must be a number, got {text!r}") from None
            if not math.isfinite(value):
                raise DatasetError(f"{where}: {field_name} must be finite, got {text!r}")
            values.append(value)
        cx, cy, w, h = values
        pixels = Box((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        box = _checked_box(pixels, width, height, f"{where}: box {' '.join(fields[1:])} (normalised)", skip_empty_boxes)
        if box is not None:
            annotations.append(Annotation(box, classes[class_id]))
    return tuple(annotations)


def _coco_id(entry: Any, where: str) -> int | str:
    """A COCO id: an integer (or a string, as some exporters write), never a bool or float."""
    if not isinstance(entry, dict):
        raise DatasetError(f"{where}: expected an object, got {entry!r}")
    value = entry.get("id")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DatasetError(f"{where}: id must be an integer or a string, got {value!r}")
    return value


def _coco_categories(entries: list[Any], name: str) -> dict[int | str, str]:
    """Category id -> name, in id order (COCO ids often start at 1 and leave gaps)."""
    categories: dict[int | str, str] = {}
    for i, entry in enumerate(entries):
        where = f"{name} categories[{i}]"
        category_id = _coco_id(entry, where)
        label = entry.get("name")
        if not isinstance(label, str) or not label.strip():
            raise DatasetError(f"{where} (id {category_id}): name must be a non-empty string")
        if category_id in categories:
            raise DatasetError(f"{where} (id {category_id}): duplicate category id")
        categories[category_id] = label.strip()
    if not categories:
        raise DatasetError(f"{name}: no categories")
    ordered = dict(sorted(categories.items(), key=lambda item: (isinstance(item[0], str), item[0])))
    _unique(list(ordered.values()), f"{name} categories")
    return ordered


def _coco_box(bbox: Any, width: int, height: int, where: str, skip_empty_boxes: bool) -> Box | None:
    """A COCO ``[x, y, w, h]`` as a checked pixel box (see :func:`_checked_box`)."""
    if (not isinstance(bbox, list) or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
        raise DatasetError(f"{where}: bbox must be 4 numbers [x, y, w, h], got {bbox!r}")
    if not all(math.isfinite(v) for v in bbox):
        raise DatasetError(f"{where}: bbox must be finite, got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    return _checked_box(Box(x, y, x + w, y + h), width, height, f"{where}: bbox {bbox!r}", skip_empty_boxes)


def _checked_box(box: Box, width: int, height: int, what: str, skip_empty_boxes: bool) -> Box | None:
    """``box`` clipped to the image, refusing boxes that are inverted, far outside it, or (unless skipped) empty."""
    if box.width < 0 or box.height < 0:
        raise DatasetError(f"{what} has a negative size")
    if (box.x0 < -PIXEL_SLACK or box.y0 < -PIXEL_SLACK
            or box.x1 > width + PIXEL_SLACK or box.y1 > height + PIXEL_SLACK):
        raise DatasetError(f"{what} reaches outside the {width}x{height} image")
    clipped = box.clip(width, height)
    if clipped is None and not skip_empty_boxes:
        raise DatasetError(f"{what} is empty: zero size or under a pixel inside the {width}x{height} image "
                           "(skip_empty_boxes=True drops such boxes)")
    return clipped
