"""Search: photo -> boxes -> crops -> vectors -> neighbours (and the text read) -> a name, and a search shown on
the map."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from pipeline.calibration import Calibrator
from pipeline.detectors import GivenBoxesDetector
from pipeline.errors import BadInputError, LogoNotFoundError, NotReadyError
from pipeline.images import ImageSource
from pipeline.knn import VoteConfig, predict_label
from pipeline.proposals import answered
from pipeline.types import Box, Detection, LogoMatch, Neighbour, PhotoSearchResult, Prediction
from pipeline.usecases.calibration import Calibration
from pipeline.usecases.parts import MAX_LOGO_ID, Parts
from pipeline.usecases.reading import Reading


@dataclass(frozen=True)
class SearchOnMap:
    """A shared search placed on the map: its logos as points and the stored logos near them."""

    stars: np.ndarray
    neighbour_ids: np.ndarray


class Search:
    """Find and name logos: of a photo, of crops, of a raw vector, of a stored logo."""

    def __init__(self, parts: Parts, calibration: Calibration, reading: Reading) -> None:
        self.parts = parts
        self.calibration = calibration
        self.reading = reading

    # -- naming --------------------------------------------------------------------------
    def vote_config(self) -> VoteConfig:
        settings = self.parts.settings
        return VoteConfig(settings.max_distance, settings.min_confidence, settings.machine_label_weight,
                          self.parts.store.thresholds())

    def calibrated(self) -> Calibrator | None:
        """The store's calibration with the thresholds people set winning over its own; None: uncalibrated."""
        calibrator = self.calibration.current()
        if calibrator is None:
            return None
        return replace(calibrator, thresholds={**calibrator.thresholds, **self.parts.store.thresholds()})

    def namer(self, calibrated: Calibrator | None = None) -> Callable[[Sequence[Neighbour]], Prediction]:
        """How the store names a query now, from its neighbours (the first ``settings.k`` vote).

        With a calibration of the store, the confidence is the probability that the label is right and a logo
        unlike any labelled one is unknown; without one, the plain vote share of :mod:`pipeline.knn`.
        Per-label thresholds set by people win over suggested ones in both cases. The calibration and
        thresholds are read once here (or given: :meth:`calibrated`), so name every logo of a photo with one
        namer.
        """
        voters = self.parts.settings.k
        calibrated = calibrated or self.calibrated()
        if calibrated is None:
            config = self.vote_config()
            return lambda neighbours: predict_label(list(neighbours)[:voters], config)
        return lambda neighbours: calibrated.predict(list(neighbours)[:voters])

    def predict(self, neighbours: Sequence[Neighbour]) -> Prediction:
        """The label of one query from its neighbours (see :meth:`namer`)."""
        return self.namer()(neighbours)

    def name(self, neighbour_lists: list[list[Neighbour]], k: int | None,
             calibrated: Calibrator | None = None) -> list[tuple[Prediction, list[Neighbour]]]:
        """Each query's prediction (from ``settings.k`` voters, whatever ``k``) and its first ``k`` neighbours."""
        shown = self.k(k)
        name = self.namer(calibrated)
        return [(name(neighbours), neighbours[:shown]) for neighbours in neighbour_lists]

    # -- searching -----------------------------------------------------------------------
    def load(self, source: ImageSource) -> Image.Image:
        """Decode an upload with this deployment's size limits (typed errors for bad files)."""
        return self.parts.load(source)

    def k(self, k: int | None) -> int:
        """``k`` checked (1..1000), or the deployment's."""
        k = self.parts.settings.k if k is None else int(k)
        if not 1 <= k <= 1000:
            raise BadInputError(f"k must be between 1 and 1000, got {k}")
        return k

    def require_ready(self) -> None:
        """Refuse a search while the store's build has nothing to search yet.

        A store being built is searched as soon as it has an index for the current model (the build indexes
        the bundled logos first); before that an answer would be "unknown" for everything.

        Raises:
            NotReadyError: no index yet, with the build's progress.
        """
        status = self.parts.build.status()
        if status.building and (self.parts.index.info() is None
                                or self.parts.store.model_id != self.parts.embedder.model_id):
            raise NotReadyError(f"{status.sentence()} Searches are answered as soon as there is an index; "
                                "try again in a few seconds.")

    def neighbours(self, pairs: Sequence[tuple[int, float]]) -> list[Neighbour]:
        """Index hits as neighbours with their current labels (a logo removed meanwhile is left out)."""
        labels = self.parts.store.labels([logo_id for logo_id, _ in pairs])
        return [Neighbour(logo_id, *labels.get(logo_id, (None, None)), distance)
                for logo_id, distance in pairs if logo_id in labels]

    def detect(self, image: Image.Image, boxes: Sequence[Box | Sequence[float]] | None = None) -> list[Detection]:
        """The given boxes (checked), or the configured detector's.

        Raises:
            BadInputError: more than ``settings.max_boxes`` boxes (each one is embedded: a search's cost
                grows with them, and an anonymous caller must not hold the CPU for minutes).
        """
        if boxes and len(boxes) > self.parts.settings.max_boxes:
            raise BadInputError(f"at most {self.parts.settings.max_boxes} boxes per photo, got {len(boxes)}")
        detector = GivenBoxesDetector(boxes) if boxes else self.parts.detector
        return detector.detect(image)

    def embedding(self, vector: np.ndarray, k: int | None = None, model_id: str | None = None) -> list[Neighbour]:
        """Neighbours of a vector made by ``model_id`` (default: this deployment's embedder)."""
        self.require_ready()
        model_id = model_id or self.parts.embedder.model_id
        return self.neighbours(self.parts.index.search(vector, self.k(k), model_id))

    def crops(self, crops: Sequence[Image.Image], k: int | None = None) -> list[list[Neighbour]]:
        """Neighbours of each crop, embedded in batches."""
        return self._embed_and_search(crops, k)[1]

    def _embed_and_search(self, crops: Sequence[Image.Image],
                          k: int | None) -> tuple[np.ndarray, list[list[Neighbour]]]:
        vectors = self.parts.embedder.embed(list(crops)) if crops else np.zeros((0, 0), np.float32)
        return vectors, [self.embedding(vector, k) for vector in vectors]

    def photo(self, image: ImageSource, boxes: Sequence[Box | Sequence[float]] | None = None,
              k: int | None = None) -> PhotoSearchResult:
        """Find the logos of a photo and name each from its nearest stored logos.

        Args:
            image: The photo (path, bytes, file object or PIL image).
            boxes: Boxes drawn by a person; None runs the configured detector.
            k: Neighbours per logo (default ``settings.k``).

        Raises:
            NotReadyError: the store is being built and has no index yet.
        """
        self.require_ready()
        photo = self.parts.load(image)
        detections = self.detect(photo, boxes)
        # a person's boxes are what they asked about; the detector's may miss a wordmark, which its text finds
        lines = [] if boxes else self.reading.lines(photo)
        detections += self.reading.text_regions(lines, detections)
        crops = [self.parts.logo_crop(photo, d.box) for d in detections]
        vectors, neighbour_lists = self._embed_and_search(crops, max(self.k(k), self.parts.settings.k))
        threshold = self.parts.settings.detector_threshold
        texts = self.reading.read(crops, [d.box for d in detections], lines,
                                  [d.kind != "user" and d.score < threshold for d in detections])
        calibrated = self.calibrated()
        named = self.name(neighbour_lists, k, calibrated)
        predictions = self.reading.name([prediction for prediction, _ in named], texts, calibrated)
        logos = [LogoMatch(d.box, prediction, neighbours, d.score, text,
                           found_by="text" if d.kind == "text" else "detector")
                 for d, prediction, (_, neighbours), text in zip(detections, predictions, named, texts, strict=True)]
        # proposals (low-scored boxes, lines of text) are answered when named; one logo boxed twice, once
        kept = answered(detections, predictions, threshold, self.parts.settings.target_precision)
        left_out = sorted(set(range(len(logos))) - set(kept))
        return PhotoSearchResult(photo.width, photo.height, [logos[n] for n in kept],
                                 np.asarray(vectors, dtype=np.float32)[kept], [logos[n] for n in left_out])

    def logo(self, logo_id: int, k: int | None = None) -> list[Neighbour]:
        """Neighbours of a stored logo (itself excluded)."""
        k = self.k(k)
        self.require_ready()
        if not 0 < int(logo_id) <= MAX_LOGO_ID:
            raise LogoNotFoundError(f"no logo with id {logo_id}")
        try:
            vector = self.parts.store.vectors([logo_id])[0]
        except LogoNotFoundError:
            raise LogoNotFoundError(f"no logo with id {logo_id}") from None
        pairs = self.parts.index.search(vector, k + 1, self.parts.store.model_id or "")
        return self.neighbours([(i, d) for i, d in pairs if i != int(logo_id)][:k])

    def propose(self, logo_id: int) -> Prediction:
        """The label a stored logo's neighbours give it now (itself left out), calibrated when possible, with
        the text its thumbnail reads heard (when read: :class:`pipeline.usecases.reading.StoreTexts`)."""
        calibrated = self.calibrated()
        prediction = self.namer(calibrated)(self.logo(logo_id, self.parts.settings.k))
        text = self.parts.store.texts([logo_id]).get(int(logo_id), "")
        return self.reading.name([prediction], [text], calibrated)[0]

    # -- a search on the map -------------------------------------------------------------
    def share(self, result: PhotoSearchResult) -> str:
        """A short-lived id under which the map can show this search (the searcher's link, nobody else's)."""
        return self.parts.search_links.put(result)

    def on_map(self, search_id: str | None) -> SearchOnMap | None:
        """A shared search placed on the fitted map, or None if the id is unknown or expired.

        Raises:
            StoreError: the map is not fitted yet.
        """
        result = self.parts.search_links.get(search_id)
        if result is None or result.vectors is None:
            return None
        stars = (self.parts.map.transform(result.vectors) if len(result.vectors)
                 else np.zeros((0, 2), np.float32))
        ids = sorted({n.id for logo in result.logos for n in logo.neighbours})
        return SearchOnMap(stars, np.array(ids, dtype=np.int64))
