"""Bulk work on Ray Data: photos analysed, or stored logos re-embedded, by workers; stored by one process.

Why: an import is nearly all detection and embedding (:mod:`pipeline.analysis`),
which needs only the models; the store has one writer. Ray Data spreads the
photos over worker actors (each loads the models once) on this machine, or on a
Ray cluster unchanged (``ray.init(address=...)``, or ``RAY_ADDRESS`` set); the
driver searches, names and stores each photo as its result comes back, in order
of completion. Ray is optional (``pip install -r requirements-ray.txt``); the
plain in-process loop stays the default.

Workers send back plain arrays and PNG bytes, not live objects: on a cluster
they run on other machines.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from pipeline.analysis import PhotoAnalyser, PhotoAnalysis
from pipeline.config import Settings
from pipeline.errors import ConfigError, ImageError, StoreError
from pipeline.types import Box, Detection

if TYPE_CHECKING:
    from pipeline.usecases.parts import Parts


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate import
    except ImportError:
        raise ConfigError("--ray needs Ray Data: pip install -r requirements-ray.txt") from None
    return ray


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


class _Analyse:
    """A Ray Data actor: loads the models once, analyses batches of photo paths."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.analyser = PhotoAnalyser(Settings(**settings))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {key: [] for key in ("path", "error", "image_hash", "width", "height", "boxes",
                                                         "scores", "vectors", "crops")}
        for path in batch["path"]:
            try:
                result = self.analyser.analyse(self.analyser.load(Path(path)))
            except ImageError as exc:
                out["path"].append(str(path))
                out["error"].append(str(exc))
                for key in ("image_hash", "boxes", "scores", "vectors"):
                    out[key].append(b"" if key != "image_hash" else "")
                out["width"].append(0)
                out["height"].append(0)
                out["crops"].append([])
                continue
            out["path"].append(str(path))
            out["error"].append("")
            out["image_hash"].append(result.image_hash)
            out["width"].append(result.width)
            out["height"].append(result.height)
            out["boxes"].append(np.array([d.box.to_list() for d in result.detections], np.float32).tobytes())
            out["scores"].append(np.array([d.score for d in result.detections], np.float32).tobytes())
            out["vectors"].append(np.ascontiguousarray(result.vectors, np.float32).tobytes())
            out["crops"].append([_png(c) for c in result.crops])
        return out


def _analysis(row: dict[str, Any]) -> PhotoAnalysis:
    boxes = np.frombuffer(row["boxes"], np.float32).reshape(-1, 4)
    scores = np.frombuffer(row["scores"], np.float32)
    vectors = np.frombuffer(row["vectors"], np.float32)
    vectors = vectors.reshape(len(boxes), -1) if len(boxes) else np.zeros((0, 0), np.float32)
    detections = tuple(Detection(Box(*map(float, box)), float(score)) for box, score in zip(boxes, scores,
                                                                                            strict=True))
    crops = tuple(Image.open(io.BytesIO(bytes(data))).convert("RGB") for data in row["crops"])
    return PhotoAnalysis(str(row["image_hash"]), int(row["width"]), int(row["height"]), detections, crops,
                         np.array(vectors))


def analyse_on_ray(settings: Settings, paths: Sequence[Path], *, workers: int | None = None,
                   batch_size: int = 4) -> Iterator[tuple[str, PhotoAnalysis | None, str]]:
    """Analyse photos on Ray Data workers; yields ``(path, analysis or None, error)`` as results come.

    Args:
        settings: The models to load on the workers (as the service would).
        paths: Photos to analyse (absolute paths the workers can read: on a cluster, a shared file system).
        workers: Worker actors (default: this machine's cores, or Ray's CPUs on a cluster).
        batch_size: Photos per worker call.
    """
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
    workers = workers or max(1, int(ray.cluster_resources().get("CPU", os.cpu_count() or 1)))
    config = {key: (str(value) if isinstance(value, Path) else value) for key, value in asdict(settings).items()}
    blocks = max(1, min(len(paths), max(2 * workers, len(paths) // batch_size)))  # every worker gets blocks
    ds = ray.data.from_items([{"path": str(p)} for p in paths], override_num_blocks=blocks)
    results = ds.map_batches(_Analyse, fn_constructor_kwargs={"settings": config}, batch_size=batch_size,
                             concurrency=workers, num_cpus=1)
    for row in results.iter_rows():
        if row["error"]:
            yield row["path"], None, row["error"]
        else:
            yield row["path"], _analysis(row), ""


class _Reembed:
    """A Ray Data actor: cuts stored logos again (source image, else thumbnail) and embeds them."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.analyser = PhotoAnalyser(Settings(**settings))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        sources: dict[str, tuple[Image.Image, str] | None] = {}
        done: list[tuple[int, Image.Image, str]] = []
        missing: list[int] = []
        for logo_id, path, image_hash, box, thumbnail in zip(batch["id"], batch["path"], batch["hash"],
                                                             batch["box"], batch["thumbnail"], strict=True):
            box = np.asarray(box, dtype=np.float64)
            try:
                image, origin = self.analyser.reembed_crop(
                    int(logo_id), str(path) or None, str(image_hash) or None,
                    Box(*map(float, box)) if np.isfinite(box).all() else None, bytes(thumbnail) or None, sources)
            except StoreError:  # the source changed and no thumbnail came along: the driver cuts it
                missing.append(int(logo_id))
                continue
            done.append((int(logo_id), image, origin))
        vectors = np.asarray(self.analyser.embedder.embed([image for _, image, _ in done]), np.float32) \
            if done else np.zeros((0, 0), np.float32)
        return {"id": [i for i, _, _ in done] + missing,
                "vector": [v.tobytes() for v in vectors] + [b""] * len(missing),
                "origin": [origin for _, _, origin in done] + ["missing"] * len(missing)}


def reembed_on_ray(parts: Parts, ids: Sequence[int], *, workers: int | None = None, progress: bool = True,
                   chunk: int = 20_000) -> Iterator[tuple[list[int], np.ndarray, list[str]]]:
    """Re-embed stored logos on Ray Data workers; yields ``(ids, vectors, origins)`` a chunk at a time.

    A logo's thumbnail travels only when its source file is not on this machine; the rare logo whose source
    changed since (a worker finds other pixels) is cut and embedded here, from its thumbnail.
    """
    from tqdm import tqdm

    from pipeline.util import chunked

    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
    workers = workers or max(1, int(ray.cluster_resources().get("CPU", os.cpu_count() or 1)))
    config = {key: (str(value) if isinstance(value, Path) else value)
              for key, value in asdict(parts.settings).items()}
    bar = tqdm(total=len(ids), desc="re-embed on ray", unit="logo", disable=not progress)
    for part in chunked(list(ids), chunk):
        items = []
        for record in parts.store.get(list(part)):
            local = bool(record.image_path) and Path(record.image_path).is_file()
            items.append({"id": record.id, "path": record.image_path or "", "hash": record.image_hash or "",
                          "box": record.box.to_list() if record.box else [float("nan")] * 4,
                          "thumbnail": b"" if local else (parts.store.thumbnail(record.id) or b"")})
        blocks = max(1, min(len(items), 2 * workers))
        rows = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            _Reembed, fn_constructor_kwargs={"settings": config}, batch_size=64, concurrency=workers,
            num_cpus=1).take_all()
        found: dict[int, tuple[np.ndarray, str]] = {}
        for row in rows:
            if row["origin"] == "missing":
                record = parts.store.get([int(row["id"])])[0]
                image, origin = parts.analyser.reembed_crop(record.id, None, None, None,
                                                              parts.store.thumbnail(record.id), {})
                found[record.id] = (np.asarray(parts.embedder.embed([image]), np.float32)[0], origin)
            else:
                found[int(row["id"])] = (np.frombuffer(row["vector"], np.float32), row["origin"])
        chunk_ids = [i for i in part if i in found]
        bar.update(len(part))
        yield chunk_ids, np.stack([found[i][0] for i in chunk_ids]), [found[i][1] for i in chunk_ids]
    bar.close()
