"""Maintenance: rebuild the index, fold new logos into it, re-embed the store for a new model."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from pipeline.errors import StoreError
from pipeline.index import IndexInfo
from pipeline.types import LogoRecord
from pipeline.usecases.parts import Parts
from pipeline.util import chunked

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReembedReport:
    """What :meth:`Maintenance.reembed` did (``to_json`` is the CLI's output shape)."""

    old_model: str | None
    new_model: str
    logos: int
    from_source: int
    from_thumbnail: int
    seconds: float


class Maintenance:
    """Keep the index and the vectors in step with the store and the configured embedder."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def build_index(self) -> IndexInfo:
        """Rebuild the ANN index from every stored vector now and switch to it atomically.

        Raises:
            StoreError: the store is empty.
        """
        return self.parts.index.generation.refresh(force=True)

    def needs_reembed(self) -> bool:
        """Whether the store holds vectors of another model than the configured embedder's."""
        model_id = self.parts.store.model_id
        return model_id is not None and model_id != self.parts.embedder.model_id

    def needs_index(self) -> bool:
        """Whether stored logos have no usable index (never built, or built for another model)."""
        return self.parts.index.needs_rebuild()

    def compact_when_due(self) -> None:
        """Rebuild the index in the background once more than ``compact_after`` logos wait in the exact delta.

        Until then new logos are searched exactly, which costs a little more with
        each one; requests coalesce into one rebuild at a time (the index's file lock serialises processes).
        """
        if self.parts.index.counts()[1] > self.parts.settings.compact_after:
            self.parts.index.generation.request(force=True)

    def reembed(self, *, batch: int = 64, progress: bool = True, ray: bool = False,
                workers: int | None = None, advance: Callable[[int], None] | None = None) -> ReembedReport:
        """Re-embed every stored logo with the configured embedder if the store was built with another.

        Each logo is cut again from its source image when that file is still
        there with the same pixels (``image_path`` + ``box``), else taken from
        its stored thumbnail. The new vectors are staged beside the old ones and
        switched in one transaction, then the index is rebuilt; a crash midway
        leaves the store on the old model. Run it before serving (the app does,
        at start): logos added meanwhile would still come with the old model.
        With ``ray``, the crops are cut and embedded on Ray Data workers
        (:func:`pipeline.distributed.reembed_on_ray`) and staged here. ``advance`` is told each batch's size.
        """
        store, embedder = self.parts.store, self.parts.embedder
        started = time.perf_counter()
        old, new = store.model_id, embedder.model_id
        if old is None or old == new:
            return ReembedReport(old, new, 0, 0, 0, 0.0)
        ids = store.ids()
        log.info("re-embedding %d logos: %s -> %s", len(ids), old, new)
        counts = {"source": 0, "thumbnail": 0}
        if ray:
            from pipeline.distributed import reembed_on_ray

            for chunk_ids, vectors, origins in reembed_on_ray(self.parts, ids, workers=workers, progress=progress):
                store.stage_vectors(new, chunk_ids, vectors)
                if advance:
                    advance(len(chunk_ids))
                for origin in origins:
                    counts[origin] += 1
            ids_to_embed: list[int] = []
        else:
            ids_to_embed = ids
        for chunk in tqdm(list(chunked(ids_to_embed, batch)), desc=f"re-embed with {new}", unit="batch",
                          disable=not progress or not ids_to_embed):
            crops, sources = [], {}  # logos of one photo are neighbours in id order: decode it once
            for record in store.get(chunk):
                image, origin = self.reembed_crop(record, sources)
                crops.append(image)
                counts[origin] += 1
            store.stage_vectors(new, chunk, embedder.embed(crops))
            if advance:
                advance(len(chunk))
        store.switch_model(new, embedder.dim, ids)
        self.build_index()
        report = ReembedReport(old, new, len(ids), counts["source"], counts["thumbnail"],
                               time.perf_counter() - started)
        log.info("re-embedded %d logos (%d from their source image, %d from thumbnails) in %.1f s",
                 report.logos, report.from_source, report.from_thumbnail, report.seconds)
        return report

    def reembed_crop(self, record: LogoRecord,
                     sources: dict[str, tuple[Image.Image, str] | None]) -> tuple[Image.Image, str]:
        """The logo's crop from its source image if unchanged there, else from its thumbnail."""
        store, analyser = self.parts.store, self.parts.analyser
        thumbnail = None
        if not (record.image_path and Path(record.image_path).is_file()):
            thumbnail = store.thumbnail(record.id)
        try:
            return analyser.reembed_crop(record.id, record.image_path, record.image_hash, record.box,
                                         thumbnail, sources)
        except StoreError:
            if thumbnail is not None:
                raise
            return analyser.reembed_crop(record.id, None, None, None, store.thumbnail(record.id), sources)
