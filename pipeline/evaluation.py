"""Retrieval evaluation: how often the kNN label of a query crop is right.

:func:`evaluate`: the gallery (an ImageFolder tree) is embedded into a temporary
store and index, built exactly as production builds them; each query crop
(another ImageFolder tree with the same labels) is then searched and named by
the same vote. A store's evaluation on its own labels is :mod:`pipeline.store_evaluation`.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipeline.config import Settings
from pipeline.embedders import Embedder
from pipeline.errors import BadInputError, ImageError
from pipeline.importing import import_folder, labelled_files
from pipeline.knn import VoteConfig, predict_label
from pipeline.service import LogoService
from pipeline.util import chunked


@dataclass(frozen=True)
class EvaluationReport:
    """Figures of one evaluation run (``to_json`` is the CLI's public output shape)."""

    top1: float
    recall_at_5: float
    nn_top1: float
    queries: int
    gallery: int
    classes: int
    failed: int
    model: str
    seconds: float


def evaluate(settings: Settings, gallery_dir: Path, query_dir: Path, *, embedder: Embedder | None = None,
             progress: bool = True) -> EvaluationReport:
    """Embed ``gallery_dir`` into a temporary store, then classify every crop of ``query_dir``.

    ``top1`` is the share of queries whose kNN vote (no *unknown* cut-off) names
    the right label; ``recall@5`` the share whose 5 nearest gallery logos include
    it; ``nn_top1`` the share whose single nearest logo has it.
    """
    started = time.perf_counter()
    queries = labelled_files(Path(query_dir))
    if not queries:
        raise BadInputError(f"{query_dir} holds no labelled query images (expected LABEL/IMAGE files)")
    with tempfile.TemporaryDirectory(prefix="logo-eval-") as tmp:
        service = LogoService(settings.replace(data_dir=Path(tmp)), embedder=embedder)
        gallery = import_folder(service, Path(gallery_dir), progress=progress)
        if not gallery.added:
            raise BadInputError(f"{gallery_dir} holds no usable gallery images")
        service.maintenance.build_index()
        vote = VoteConfig(max_distance=2.0, min_confidence=0.0, machine_weight=settings.machine_label_weight)
        k = max(5, settings.k)
        hits = hits5 = nn_hits = failed = 0
        for chunk in tqdm(list(chunked(queries, 64)), desc="queries", unit="batch", disable=not progress):
            crops, labels = [], []
            for path, label in chunk:
                try:
                    crops.append(service.search.load(path))
                    labels.append(label)
                except ImageError:
                    failed += 1
            for label, neighbours in zip(labels, service.search.crops(crops, k), strict=True):
                hits += predict_label(neighbours, vote).label == label
                hits5 += label in {n.label for n in neighbours[:5]}
                nn_hits += bool(neighbours) and neighbours[0].label == label
        classes = len(service.labels.counts())
        model_id = service.model_id
    scored = len(queries) - failed
    return EvaluationReport(hits / max(scored, 1), hits5 / max(scored, 1), nn_hits / max(scored, 1), scored,
                            len(gallery.added), classes, failed + len(gallery.failed), model_id,
                            time.perf_counter() - started)
