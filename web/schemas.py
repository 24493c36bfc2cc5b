"""Every JSON shape the API takes or gives, as pydantic models: ``/docs`` shows each one.

The request models check what strangers send (sizes, ranges, ids) before any work;
the response models are the public contract (robotoff-ann's shapes, and the CLI's
``--json`` shapes where a route mirrors a command), so a change to one is a change
to a contract and shows in ``/docs``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from pipeline.usecases.parts import MAX_LOGO_ID

MAX_BATCH = 1000


Count = Annotated[int, Query(ge=1, le=500, description="neighbours per logo")]
Index = Annotated[str | None, Query(description="named index (embedding model); default: the store's")]


class NeighbourOut(BaseModel):
    logo_id: int
    distance: float
    label: str | None


class NeighboursOut(BaseModel):
    results: list[NeighbourOut]
    count: int


class BatchIn(BaseModel):
    logo_ids: list[int] = Field(min_length=1, max_length=MAX_BATCH)
    count: int = Field(100, ge=1, le=500)


class BatchOut(BaseModel):
    results: dict[int, list[NeighbourOut]]
    count: int
    next_after: int | None = Field(None, description="paged walk: the cursor of the next page (absent: none)")


class ThresholdIn(BaseModel):
    threshold: float | None = Field(..., ge=0.0, le=1.0, description="confidence the label needs; null removes it")


class LabelIn(BaseModel):
    label: str | None = Field(..., max_length=200, description="the logo's label; null clears it")


LogoId = Annotated[int, Field(ge=1, le=MAX_LOGO_ID)]


class ReviewIn(BaseModel):
    accept: list[LogoId] = Field(default_factory=list, max_length=MAX_BATCH,
                                 description="proposals made human labels")
    reject: list[LogoId] = Field(default_factory=list, max_length=MAX_BATCH,
                                 description="proposals removed and remembered as 'not this label'")
    relabel: dict[LogoId, str] = Field(default_factory=dict, max_length=MAX_BATCH, description="{logo id: new label}")
    proposals: dict[LogoId, str] = Field(default_factory=dict, max_length=3 * MAX_BATCH,
                                      description="the proposal each logo was shown with; default: its current label")


class EmbeddingIn(BaseModel):
    embedding: list[float] = Field(min_length=1)
    count: int = Field(1, ge=1, le=500)
    model: str | None = Field(None, description="model id of the embedding; default: the store's")


class UrlLogoIn(BaseModel):
    id: int = Field(description="the client's own logo id (e.g. Robotoff's)")
    bounding_box: list[float] = Field(min_length=4, max_length=4, description="[y_min, x_min, y_max, x_max] in 0..1")


class UrlAddIn(BaseModel):
    image_url: str = Field(max_length=2048)
    logos: list[UrlLogoIn] = Field(min_length=1, max_length=100)


# -- answers --------------------------------------------------------------------------------------------------------
class CountOut(BaseModel):
    count: int


class StoredOut(BaseModel):
    stored: list[int] = Field(description="the ids clients know (their external id where a logo has one)")
    count: int
    next_after: int | None = Field(description="the cursor of the next page; null on the last")


class AddedOut(BaseModel):
    added: int = Field(description="logos added (ids the store already holds count 0)")
    ids: list[int] | None = Field(None, description="store ids of the added logos (multipart adds only)")


class SearchNeighbourOut(BaseModel):
    id: int
    label: str | None
    distance: float


class GuessOut(BaseModel):
    label: str
    probability: float


class SearchLogoOut(BaseModel):
    box: list[int | float] = Field(description="[x0, y0, x1, y1] in pixels of the photo (integers stay integers)")
    label: str | None = Field(description="the name given; null: unknown")
    confidence: float
    neighbours: list[SearchNeighbourOut]
    text: str = Field("", description="the text read on the logo, its lines joined by a space (empty when none "
                                      "was read, for logos past LOGOS_READ_TEXT, or with reading off)")
    named_by: str | None = Field(None, description="'text' when the logo's text named a label the vote alone "
                                                   "did not give: text that agreed with the vote's guess raised "
                                                   "its probability past the threshold, or text named a label "
                                                   "with no stored logo; absent when the vote named it")
    guess: GuessOut | None = Field(None, description="only for an unknown logo with labelled neighbours: the "
                                                     "vote's winner, not given")


class SearchOut(BaseModel):
    """The shape of ``python -m pipeline search --json``."""

    logos: list[SearchLogoOut]


class CalibrationOut(BaseModel):
    """The shape of ``python -m pipeline calibrate``."""

    model: str
    answers: int
    ece: float
    max_distance: float
    default_threshold: float
    label_thresholds: int


class ThresholdsOut(BaseModel):
    set: dict[str, float] = Field(description="thresholds people set, per label")
    suggested: dict[str, float] = Field(description="the calibration's, per label")
    default: float


class ThresholdOut(BaseModel):
    label: str
    threshold: float | None


class LabelOut(BaseModel):
    id: int
    label: str | None


class EventOut(BaseModel):
    event: int
    action: str = Field(description="one id per change (a bulk label or a review screen is one action)")
    logo_id: int
    old_label: str | None
    old_source: str | None
    new_label: str | None
    new_source: str | None
    who: str
    undoes: str | None = Field(description="the action this event undoes")
    undone: int = Field(description="1 once undone")
    at: float = Field(description="Unix time")


class HistoryOut(BaseModel):
    events: list[EventOut]
    next_before: int | None = Field(description="pass as before for the next page; null on the last")


class VocabularyEntryOut(BaseModel):
    label: str
    aliases: list[str]
    logos: int = Field(description="stored logos carrying the label (0: a name only)")


class VocabularyOut(BaseModel):
    """The shape of ``python -m pipeline labels list --json``."""

    labels: list[VocabularyEntryOut]


class VocabularyImportOut(BaseModel):
    """The shape of ``python -m pipeline labels import FILE``."""

    added: int = Field(description="labels new to the vocabulary")
    labels: int = Field(description="labels the store knows now")


class ProgressOut(BaseModel):
    machine: int
    human: int
    rejected: int
    unlabelled: int


class ReviewItemOut(BaseModel):
    id: int
    label: str
    confidence: float | None
    stored: bool
    current: str | None
    references: list[int]
    proposed_by: str = Field("vote", description="what proposed the label: 'vote' (the neighbours) or 'text' (the "
                                                 "logo's text named it)")


class ReviewGroupOut(BaseModel):
    label: str
    items: list[ReviewItemOut]


class ReviewQueueOut(BaseModel):
    progress: ProgressOut
    groups: list[ReviewGroupOut]


class ReviewedOut(BaseModel):
    changed: int
    progress: ProgressOut


class StoreEvaluationOut(BaseModel):
    """The shape of ``python -m pipeline evaluate --store --json``; ``recall@K`` is named for its ``k``."""

    model_config = ConfigDict(extra="allow")

    top1: float
    k: int
    queries: int
    model: str
    labels: list[dict[str, str | int | float]]
    confused: list[dict[str, str | int]]
