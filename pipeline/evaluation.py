"""Retrieval evaluation: how often the kNN label of a query crop is right.

:func:`evaluate`: the gallery (an ImageFolder tree) is embedded into a temporary
store and index, built exactly as production builds them; each query crop
(another ImageFolder tree with the same labels) is then searched and named by
the same vote. :func:`evaluate_store`: a store's own human labels, each logo
searched among the others with itself left out, per label and overall, with the
label pairs it confuses most.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.config import Settings
from pipeline.embedders import Embedder
from pipeline.errors import BadInputError, ImageError
from pipeline.importing import import_folder, labelled_files
from pipeline.index import angular_from_cosine
from pipeline.knn import VoteConfig, predict_label
from pipeline.service import LogoService
from pipeline.types import LabelSource, Neighbour
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

    def to_json(self) -> dict[str, object]:
        return {"top1": round(self.top1, 4), "recall@5": round(self.recall_at_5, 4),
                "nn_top1": round(self.nn_top1, 4), "queries": self.queries, "gallery": self.gallery,
                "classes": self.classes, "failed": self.failed, "model": self.model,
                "seconds": round(self.seconds, 2)}


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
        service.build_index()
        vote = VoteConfig(max_distance=2.0, min_confidence=0.0, machine_weight=settings.machine_label_weight)
        k = max(5, settings.k)
        hits = hits5 = nn_hits = failed = 0
        for chunk in tqdm(list(chunked(queries, 64)), desc="queries", unit="batch", disable=not progress):
            crops, labels = [], []
            for path, label in chunk:
                try:
                    crops.append(service.load(path))
                    labels.append(label)
                except ImageError:
                    failed += 1
            for label, neighbours in zip(labels, service.search_crops(crops, k), strict=True):
                hits += predict_label(neighbours, vote).label == label
                hits5 += label in {n.label for n in neighbours[:5]}
                nn_hits += bool(neighbours) and neighbours[0].label == label
        classes = len(service.store.label_counts())
        model_id = service.embedder.model_id
    scored = len(queries) - failed
    return EvaluationReport(hits / max(scored, 1), hits5 / max(scored, 1), nn_hits / max(scored, 1), scored,
                            len(gallery.added), classes, failed + len(gallery.failed), model_id,
                            time.perf_counter() - started)


@dataclass(frozen=True)
class LabelAccuracy:
    """Leave-one-out figures of one label's human-labelled logos."""

    label: str
    logos: int
    top1: float
    recall_at_k: float


@dataclass(frozen=True)
class StoreEvaluation:
    """How well the store names its own human-labelled logos, each searched with itself left out.

    ``to_json`` is the public shape of ``evaluate --store --json``.
    """

    top1: float
    recall_at_k: float
    k: int
    queries: int
    labels: tuple[LabelAccuracy, ...]  # worst first
    confused: tuple[tuple[str, str, int], ...]  # (true label, label given instead, times), most frequent first
    model: str

    def to_json(self) -> dict[str, object]:
        return {"top1": round(self.top1, 4), f"recall@{self.k}": round(self.recall_at_k, 4), "k": self.k,
                "queries": self.queries, "model": self.model,
                "labels": [{"label": a.label, "logos": a.logos, "top1": round(a.top1, 4),
                            f"recall@{self.k}": round(a.recall_at_k, 4)} for a in self.labels],
                "confused": [{"label": true, "given": given, "times": times} for true, given, times in self.confused]}


def evaluate_store(service: LogoService, k: int = 10, confused: int = 20,
                   max_queries: int | None = None) -> StoreEvaluation:
    """Leave-one-out kNN accuracy of the store on its human labels, per label and overall.

    Every human-labelled logo is searched exactly among all other logos (the ones labelled by a machine
    vote too, as they do in production), named by the production vote, and counted right when the vote
    gives its label (top-1) or when its label is among its ``k`` nearest logos (recall@k). Labels with
    a single human logo are skipped: left out, nothing of their label remains to find.

    With ``max_queries``, a seeded random sample of that many logos is searched (each still among all the
    others): the cost grows with queries x logos, and the background report of a big store must end.

    Raises:
        BadInputError: No label has two human-labelled logos.
    """
    frame = service.label_frame()
    ids, vectors = [], []
    for batch_ids, batch in service.store.iter_vectors():
        ids.append(batch_ids)
        vectors.append(batch)
    if not ids:
        raise BadInputError("the store is empty")
    all_ids = np.concatenate(ids)
    matrix = np.concatenate(vectors)
    rows = frame.set_index("id").reindex(all_ids)
    labels = [label if isinstance(label, str) else None for label in rows.label]
    sources = [LabelSource(source) if isinstance(source, str) else None for source in rows.source]
    human = Counter(label for label, source in zip(labels, sources) if label and source is LabelSource.HUMAN)
    queries = [i for i, (label, source) in enumerate(zip(labels, sources))
               if label and source is LabelSource.HUMAN and human[label] >= 2]
    if not queries:
        raise BadInputError("no label has two logos labelled by people: nothing to evaluate")
    if max_queries is not None and len(queries) > max_queries:
        queries = sorted(np.random.default_rng(0).choice(queries, max_queries, replace=False).tolist())
    vote = VoteConfig(max_distance=2.0, min_confidence=0.0, machine_weight=service.settings.machine_label_weight)
    k = max(1, min(k, len(all_ids) - 1))
    right: dict[str, list[int]] = defaultdict(list)
    found: dict[str, list[int]] = defaultdict(list)
    mistakes: Counter[tuple[str, str]] = Counter()
    for chunk in chunked(queries, max(1, (1 << 22) // len(all_ids))):
        chunk = list(chunk)
        cosines = matrix[chunk] @ matrix.T
        cosines[np.arange(len(chunk)), chunk] = -np.inf
        top = np.argsort(-cosines, axis=1)[:, :k]
        for row, query in enumerate(chunk):
            neighbours = [Neighbour(int(all_ids[c]), labels[c], sources[c],
                                    float(angular_from_cosine(cosines[row, c]))) for c in top[row]]
            truth = labels[query]
            given = predict_label(neighbours, vote).label
            right[truth].append(given == truth)
            found[truth].append(truth in {n.label for n in neighbours})
            if given is not None and given != truth:
                mistakes[(truth, given)] += 1
    per_label = sorted((LabelAccuracy(label, len(hits), float(np.mean(hits)), float(np.mean(found[label])))
                        for label, hits in right.items()), key=lambda a: (a.top1, a.recall_at_k, a.label))
    every = [hit for hits in right.values() for hit in hits]
    every_found = [hit for hits in found.values() for hit in hits]
    return StoreEvaluation(float(np.mean(every)), float(np.mean(every_found)), k, len(every), tuple(per_label),
                           tuple((t, g, n) for (t, g), n in mistakes.most_common(confused)),
                           service.store.model_id or "")
