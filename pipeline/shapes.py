"""The public JSON shapes, apart from the domain types: what ``python -m pipeline ... --json`` prints, what the
API answers (``web/schemas.py`` documents the same shapes as pydantic models), and the report files.

A change here is a change to a contract other tools rely on: keep keys, their order and their rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.annotation import ReviewProgress
    from pipeline.evaluation import EvaluationReport
    from pipeline.exports import ExportReport
    from pipeline.importing import ImportReport
    from pipeline.store_evaluation import StoreEvaluation
    from pipeline.types import LogoMatch, Neighbour, PhotoSearchResult, StoreStats
    from pipeline.usecases.maintenance import ReembedReport
    from pipeline.vocabulary import VocabularyEntry


def neighbour(found: Neighbour) -> dict[str, Any]:
    return {"id": found.id, "label": found.label, "distance": round(found.distance, 6)}


def logo(match: LogoMatch) -> dict[str, Any]:
    """One logo of a photo: its box, its name (null: unknown), the confidence, its neighbours, the text read on it
    (may be empty), ``named_by: "text"`` when its text named it (absent when the vote did), ``found_by: "text"``
    when it is a line of text naming a label where the detector found no box (absent otherwise), and for an unknown
    logo with labelled neighbours the best guess (absent otherwise)."""
    shown: dict[str, Any] = {
        "box": match.box.to_list(),
        "label": match.prediction.label,
        "confidence": round(match.prediction.confidence, 6),
        "neighbours": [neighbour(n) for n in match.neighbours],
        "text": match.text,
    }
    if match.prediction.named_by != "vote":  # named by its text: a label no neighbour gave
        shown["named_by"] = match.prediction.named_by
    if match.found_by != "detector":  # a line of text naming a label where the detector found nothing
        shown["found_by"] = match.found_by
    if match.prediction.label is None and match.prediction.guess is not None:  # unknown, but a best guess
        shown["guess"] = {"label": match.prediction.guess, "probability": round(match.prediction.guess_probability, 6)}
    return shown


def search(result: PhotoSearchResult) -> dict[str, Any]:
    """``search --json`` and ``POST /api/v1/search``."""
    return {"logos": [logo(match) for match in result.logos]}


def stats(counts: StoreStats) -> dict[str, Any]:
    """``stats --json``, and the counts in ``/health``."""
    return dict(counts.__dict__)


def store_evaluation(report: StoreEvaluation) -> dict[str, object]:
    """``evaluate --store --json`` and ``GET /api/v1/evaluate/store``: ``recall@K`` is named for its ``k``."""
    k = report.k
    return {"top1": round(report.top1, 4), f"recall@{k}": round(report.recall_at_k, 4), "k": k,
            "queries": report.queries, "model": report.model,
            "labels": [{"label": a.label, "logos": a.logos, "top1": round(a.top1, 4),
                        f"recall@{k}": round(a.recall_at_k, 4)} for a in report.labels],
            "confused": [{"label": true, "given": given, "times": times} for true, given, times in report.confused]}


def folder_evaluation(report: EvaluationReport) -> dict[str, object]:
    """``evaluate GALLERY QUERIES --json``."""
    return {"top1": round(report.top1, 4), "recall@5": round(report.recall_at_5, 4),
            "nn_top1": round(report.nn_top1, 4), "queries": report.queries, "gallery": report.gallery,
            "classes": report.classes, "failed": report.failed, "model": report.model,
            "seconds": round(report.seconds, 2)}


def import_report(report: ImportReport) -> dict[str, object]:
    """``import-folder`` and ``import-dataset``: added, duplicates, failed; ``import-photos`` adds photos,
    resumed, labelled, no_logo (also its ``--report`` file)."""
    shown: dict[str, object] = {"added": len(report.added), "duplicates": report.duplicates,
                                "failed": [{"path": path, "error": reason} for path, reason in report.failed]}
    if report.annotated:
        shown.update(photos=report.photos, resumed=report.resumed, labelled=report.labelled, no_logo=report.no_logo)
    return shown


def reembed_report(report: ReembedReport) -> dict[str, object]:
    """``reembed``."""
    return {"old_model": report.old_model, "new_model": report.new_model, "logos": report.logos,
            "from_source": report.from_source, "from_thumbnail": report.from_thumbnail,
            "seconds": round(report.seconds, 2)}


def export_report(report: ExportReport) -> dict[str, object]:
    """``export``."""
    return {"format": report.format, "out": report.out, "photos": report.photos, "logos": report.logos,
            "labels": report.labels, "skipped_photos": list(report.skipped_photos)}


def vocabulary(entries: list[VocabularyEntry]) -> dict[str, object]:
    """``labels list --json`` and ``GET /api/v1/labels``."""
    return {"labels": [{"label": e.label, "aliases": list(e.aliases), "logos": e.logos} for e in entries]}


def review_progress(progress: ReviewProgress) -> dict[str, int]:
    """The review queue's counts (``GET /api/v1/review``)."""
    return dict(progress.__dict__)
