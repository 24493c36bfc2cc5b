"""Ingest: logos into the store, from crops, photos and auto-annotation; a photo and its logos in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.analysis import PhotoAnalysis
from pipeline.errors import BadInputError
from pipeline.images import ImageSource, image_sha256
from pipeline.store import NewLogo, PhotoRecord
from pipeline.types import Box, LabelSource, Prediction
from pipeline.usecases.parts import Parts
from pipeline.usecases.search import Search
from pipeline.util import atomic_write_bytes


def proposal(prediction: Prediction, min_confidence: float) -> tuple[str, float, str] | None:
    """The label to propose for review, its probability and what named it: the label given (by the vote, or by
    the logo's text: ``named_by``), else the best guess (the vote's winner) when it is at least
    ``min_confidence`` likely, even where the naming threshold or the distance limit left it unknown; None
    without labelled neighbours."""
    if prediction.label is not None:
        return prediction.label, prediction.confidence, prediction.named_by
    if prediction.guess is not None and prediction.guess_probability >= min_confidence:
        return prediction.guess, prediction.guess_probability, "vote"
    return None


class Ingest:
    """Add logos: crops with their labels, the boxes of a photo, or a photo auto-annotated by its neighbours."""

    def __init__(self, parts: Parts, search: Search) -> None:
        self.parts = parts
        self.search = search

    def crops(self, logos: Sequence[NewLogo], *, compact: bool = True, who: str = "local",
              photos: Sequence[PhotoRecord] = (), vectors: np.ndarray | None = None) -> list[int]:
        """Embed the crops of ``logos`` and store them; searchable at once (no rebuild needed).

        With ``compact``, a background rebuild folds the new logos into the index once enough have piled up
        (:meth:`pipeline.usecases.maintenance.Maintenance.compact_when_due`); a bulk import that rebuilds at its
        end passes False. ``who`` is written into the label history of the labelled ones; ``photos`` are
        recorded as done in the same transaction. ``vectors``: the crops' embeddings by this store's embedder,
        when the caller has them already (a benchmark that builds several stores from one set of crops).

        Raises:
            BadInputError: A logo without its crop, or ``vectors`` not one row of the embedder's width a logo.
        """
        store = self.parts.store
        if not logos:
            store.add_photos(photos)
            return []
        if any(logo.crop is None for logo in logos):
            raise BadInputError("every logo to add needs its crop")
        embedder = self.parts.embedder
        if vectors is None:
            vectors = embedder.embed([logo.crop for logo in logos])
        elif np.shape(vectors) != (len(logos), embedder.dim):
            raise BadInputError(f"vectors of shape {np.shape(vectors)} for {len(logos)} logos of "
                                f"{embedder.dim}-d embeddings")
        ids = store.add(logos, vectors, embedder.model_id, who=who, photos=photos)
        if compact:
            self.parts.signals.grew()
        self.parts.signals.added()
        return ids

    def photo(self, image: ImageSource, boxes: Sequence[Box | Sequence[float]] | None = None,
              labels: Sequence[str | None] | None = None, source: LabelSource | str = LabelSource.HUMAN,
              image_path: str | None = None, who: str = "local") -> list[int]:
        """Add the logos of one photo (the given boxes, else the detector's), optionally labelled by ``who``.

        Raises:
            BadInputError: ``labels`` does not have one entry per box.
        """
        photo = self.parts.load(image)
        detections = self.search.detect(photo, boxes)
        labels = list(labels) if labels is not None else [None] * len(detections)
        if len(labels) != len(detections):
            raise BadInputError(f"got {len(labels)} labels for {len(detections)} logos")
        source = LabelSource.parse(source)
        image_hash = image_sha256(photo)
        ids = self.crops([
            NewLogo(crop=self.parts.logo_crop(photo, d.box), box=d.box, image_hash=image_hash,
                    image_path=image_path, label=label, label_source=source if label else None, score=d.score)
            for d, label in zip(detections, labels, strict=True)
        ], who=who)
        if any(labels):
            self.parts.signals.relabelled()  # a recalibration, in the background
        return ids

    def annotate(self, photo: Image.Image, image_hash: str, path: str | None, *, who: str = "local") -> list[int]:
        """Auto-annotate one photo: store each detected logo with its kNN label as a ``machine`` label.

        One embedding pass serves both the search and the store. The confidence kept with a proposal is the
        calibrated probability (the vote share before the store has a calibration). A proposal is stored
        when it is at least ``LOGOS_PROPOSE_MIN`` likely, below the threshold at which a search names the
        logo too: people review proposals, least confident first. Other logos are stored unlabelled. The
        photo is recorded in the same transaction as its logos, even when it has none, so that an interrupted
        bulk run resumes without duplicates or gaps.
        """
        return self.store_analysis(self.analyse(photo, image_hash), path, who=who)

    def analyse(self, photo: Image.Image, image_hash: str | None = None) -> PhotoAnalysis:
        """Detect, cut and embed the logos of a photo, storing nothing (:meth:`store_analysis` stores them)."""
        return self.parts.analyser.analyse(photo, image_hash)

    def logo_crop(self, photo: Image.Image, box: Box) -> Image.Image:
        """The crop of ``box`` that gets embedded: the box plus ``settings.crop_padding`` of context."""
        return self.parts.logo_crop(photo, box)

    def store_analysis(self, analysis: PhotoAnalysis, path: str | None, *, who: str = "local") -> list[int]:
        """Search, name and store the logos of an analysed photo (:meth:`annotate`'s second half; a Ray
        import analyses photos on its workers and stores them here)."""
        settings = self.parts.settings
        neighbour_lists = [self.search.embedding(vector, settings.k) for vector in analysis.vectors]
        calibrated = self.search.calibrated()
        predictions = self.search.reading.name([p for p, _ in self.search.name(neighbour_lists, None, calibrated)],
                                               self.search.reading.read(analysis.crops), calibrated)
        logos = []
        for d, crop_image, prediction in zip(analysis.detections, analysis.crops, predictions, strict=True):
            label, confidence, proposed_by = proposal(prediction, settings.propose_min) or (None, None, None)
            logos.append(NewLogo(crop=crop_image, box=d.box, image_hash=analysis.image_hash, image_path=path,
                                 label=label, label_source=LabelSource.MACHINE if label else None,
                                 score=d.score, confidence=confidence, proposed_by=proposed_by))
        record = PhotoRecord(analysis.image_hash, path, analysis.width, analysis.height, len(logos))
        ids = self.parts.store.add(logos, analysis.vectors, self.parts.embedder.model_id, who=who,
                                   photos=[record])
        if ids:
            self.parts.signals.grew()
            self.parts.signals.added()
        return ids

    def annotate_upload(self, path: Path, *, who: str = "local") -> list[int] | None:
        """Auto-annotate an uploaded photo, kept under ``DATA_DIR/photos/`` so that exports can include it.

        Returns:
            The new logo ids, or None when the photo (same pixels) was done before.

        Raises:
            ImageError: The file is not a usable image.
        """
        photo = self.parts.load(path)
        digest = image_sha256(photo)
        if self.has_photo(image_hash=digest) or self.has_image(digest):
            return None
        kept = self.parts.settings.data_dir / "photos" / f"{digest[:20]}{Path(path).suffix.lower() or '.jpg'}"
        kept.parent.mkdir(parents=True, exist_ok=True)
        if not kept.exists():
            atomic_write_bytes(kept, Path(path).read_bytes())
        return self.annotate(photo, digest, str(kept), who=who)

    def has_photo(self, *, path: str | None = None, image_hash: str | None = None) -> bool:
        """Whether a photo with this path (as recorded) or these pixels went through the store: a resumed
        import skips it."""
        return self.parts.store.has_photo(path=path, image_hash=image_hash)

    def has_image(self, image_hash: str) -> bool:
        """Whether logos cut from an image with these pixels are stored already (a duplicate to skip)."""
        return self.parts.store.has_image(image_hash)
