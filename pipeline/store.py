"""The logo store: SQLite (WAL) for records and labels, an append-only float32 file for vectors.

Why two files: labels change often and need transactions; vectors are written
once, are large, and are read in bulk (index builds, the map), which a
memory-mapped flat file serves best.

Crash safety (kill -9 at any instant): an add takes SQLite's write lock, writes
its vectors past the last committed row of the vector file, fsyncs them, and
only then commits the rows that point at them. A crash before the commit leaves
unreferenced bytes that the next add overwrites; the committed state is always
whole.
"""

from __future__ import annotations

import io
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from pipeline.errors import BadInputError, LogoNotFoundError, ModelMismatchError, StoreError
from pipeline.labels import clean_label
from pipeline.types import Box, LabelSource, LogoRecord, StoreStats
from pipeline.util import chunked

if TYPE_CHECKING:
    import pandas as pd

THUMBNAIL_SIZE = 128

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_hash TEXT,
    image_path TEXT,
    x0 REAL, y0 REAL, x1 REAL, y1 REAL,
    label TEXT,
    label_source TEXT CHECK (label_source IN ('human', 'machine')),
    score REAL,
    model_id TEXT NOT NULL,
    vector_row INTEGER NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS logos_label ON logos(label);
CREATE INDEX IF NOT EXISTS logos_image_hash ON logos(image_hash);
CREATE TABLE IF NOT EXISTS thumbnails (logo_id INTEGER PRIMARY KEY, webp BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS label_thresholds (label TEXT PRIMARY KEY, threshold REAL NOT NULL);
CREATE TABLE IF NOT EXISTS label_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL,
    logo_id INTEGER NOT NULL,
    old_label TEXT, old_source TEXT,
    new_label TEXT, new_source TEXT,
    who TEXT NOT NULL,
    session TEXT,
    undoes TEXT,
    undone INTEGER NOT NULL DEFAULT 0,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS label_events_action ON label_events(action);
CREATE INDEX IF NOT EXISTS label_events_session ON label_events(session, id);
CREATE INDEX IF NOT EXISTS label_events_logo ON label_events(logo_id, id);
CREATE TABLE IF NOT EXISTS photos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_hash TEXT NOT NULL UNIQUE,
    path TEXT,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    logos INTEGER NOT NULL,
    added REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS photos_path ON photos(path);
CREATE TABLE IF NOT EXISTS rejections (
    logo_id INTEGER NOT NULL,
    label TEXT NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (logo_id, label)
);
"""

Label = tuple[str | None, LabelSource | None]


@dataclass(frozen=True)
class LabelChange:
    """One label action as the store logged it: which logos changed, from what, and who did it."""

    action: str
    label: str | None
    previous: dict[int, Label]
    who: str
    session: str | None

    @property
    def ids(self) -> list[int]:
        return sorted(self.previous)


@dataclass(frozen=True)
class NewLogo:
    """A logo to add: where it came from, its crop (for the thumbnail) and an optional label."""

    crop: Image.Image | None = None
    box: Box | None = None
    image_hash: str | None = None
    image_path: str | None = None
    label: str | None = None
    label_source: LabelSource | None = None
    score: float | None = None
    external_id: int | None = None  # the client's own id (e.g. Robotoff's logo id); unique in a store
    confidence: float | None = None  # P(right) of a machine label when it was proposed


@dataclass(frozen=True)
class PhotoRecord:
    """A photo that went through the store (its logos, if any, point at it by ``image_hash``)."""

    image_hash: str
    path: str | None
    width: int
    height: int
    logos: int
    added: float = 0.0
    id: int = 0


def _thumbnail(crop: Image.Image) -> bytes:
    small = crop.convert("RGB")
    small.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    small.save(buffer, "WEBP", quality=80)
    return buffer.getvalue()


class LogoStore:
    """Logos, their labels and vectors under one data directory.

    Safe to share between threads (one SQLite connection per thread) and
    between processes (SQLite's locking serialises writers).

    Example:
        >>> import tempfile, numpy as np
        >>> store = LogoStore(tempfile.mkdtemp())
        >>> ids = store.add([NewLogo(label="acme", label_source=LabelSource.HUMAN)],
        ...                 np.eye(1, 4, dtype=np.float32), model_id="demo")
        >>> store.get(ids)[0].label
        'acme'
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / "logos.sqlite"
        self._local = threading.local()
        self._map_lock = threading.Lock()
        self._map: tuple[str, int, np.memmap] | None = None
        conn = self._conn()
        conn.executescript(_SCHEMA)  # idempotent; executescript manages its own transaction
        columns = {row[1] for row in conn.execute("PRAGMA table_info(logos)")}
        if "external_id" not in columns:
            conn.execute("ALTER TABLE logos ADD COLUMN external_id INTEGER")  # a store made before external ids
        if "confidence" not in columns:
            conn.execute("ALTER TABLE logos ADD COLUMN confidence REAL")  # a store made before machine proposals
        conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS logos_external_id ON logos(external_id)"
                     " WHERE external_id IS NOT NULL")

    # -- connections -------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock from its first statement."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- meta --------------------------------------------------------------------------
    def _meta(self, conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def model_id(self) -> str | None:
        """The embedding model of every vector in the store (None while empty)."""
        return self._meta(self._conn(), "model_id")

    @property
    def dim(self) -> int | None:
        value = self._meta(self._conn(), "dim")
        return int(value) if value is not None else None

    def _vector_path(self, model_id: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id)
        return self.data_dir / "vectors" / f"{safe}.f32"

    # -- writes ------------------------------------------------------------------------
    def add(self, logos: Sequence[NewLogo], vectors: np.ndarray, model_id: str, *, who: str = "local",
            photos: Sequence[PhotoRecord] = ()) -> list[int]:
        """Store logos with their vectors atomically; returns their new ids in order.

        A logo added with a label gets an event in the label history, so that
        every label a logo ever had is in the events. The ``photos`` they were
        found on (and photos of the same batch without a logo) are recorded in the
        same transaction (see :meth:`add_photos`): a photo is never marked done
        without its logos, so an import re-run after a crash skips nothing it lost.

        Raises:
            ModelMismatchError: the store holds vectors of another model or size.
            StoreError: the vectors do not match the logos or are not finite.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(logos):
            raise StoreError(f"expected {len(logos)} vectors, got an array of shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise StoreError("vectors must be finite")
        if not logos:
            self.add_photos(photos)
            return []
        rows = []
        for logo in logos:
            label = clean_label(logo.label)
            source = (LabelSource.parse(logo.label_source) if logo.label_source else LabelSource.HUMAN) if label else None
            box = logo.box
            rows.append((logo.image_hash, logo.image_path, *(box.to_list() if box else (None,) * 4), label,
                         source.value if source else None, logo.score, logo.external_id,
                         logo.confidence if label else None))
        thumbs = [_thumbnail(logo.crop) if logo.crop is not None else None for logo in logos]
        now = time.time()
        try:
            return self._insert(rows, thumbs, vectors, model_id, now, who, photos)
        except sqlite3.IntegrityError as exc:  # a client's external id taken meanwhile by another add
            raise StoreError(f"cannot add these logos: {exc}") from None

    def _insert(self, rows: list[tuple], thumbs: list[bytes | None], vectors: np.ndarray, model_id: str,
                now: float, who: str, photos: Sequence[PhotoRecord]) -> list[int]:
        with self._transaction() as conn:
            for photo in photos:
                self._add_photo(conn, photo)
            self._check_model(conn, model_id, vectors.shape[1], claim=True)
            start = conn.execute("SELECT COALESCE(MAX(vector_row) + 1, 0) FROM logos").fetchone()[0]
            self._write_vectors(model_id, [start], [vectors])
            ids = []
            for offset, row in enumerate(rows):
                cursor = conn.execute(
                    "INSERT INTO logos (image_hash, image_path, x0, y0, x1, y1, label, label_source, score,"
                    " external_id, confidence, model_id, vector_row, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*row, model_id, start + offset, now),
                )
                ids.append(int(cursor.lastrowid))
            conn.executemany("INSERT INTO thumbnails (logo_id, webp) VALUES (?, ?)",
                             [(i, t) for i, t in zip(ids, thumbs, strict=True) if t is not None])
            labelled = {i: (row[6], row[7]) for i, row in zip(ids, rows, strict=True) if row[6]}
            if labelled:
                self._apply_labels(conn, uuid.uuid4().hex, labelled, dict.fromkeys(labelled, (None, None)), who,
                                   None, write=False)
        return ids

    def add_photos(self, photos: Sequence[PhotoRecord]) -> None:
        """Record photos as done (an import re-run skips them), in one transaction; a known hash is kept."""
        if not photos:
            return
        with self._transaction() as conn:
            for photo in photos:
                self._add_photo(conn, photo)

    @staticmethod
    def _add_photo(conn: sqlite3.Connection, photo: PhotoRecord) -> None:
        conn.execute("INSERT OR IGNORE INTO photos (image_hash, path, width, height, logos, added)"
                     " VALUES (?, ?, ?, ?, ?, ?)",
                     (photo.image_hash, photo.path, int(photo.width), int(photo.height), int(photo.logos),
                      photo.added or time.time()))

    def _check_model(self, conn: sqlite3.Connection, model_id: str, dim: int, claim: bool) -> None:
        stored_model, stored_dim = self._meta(conn, "model_id"), self._meta(conn, "dim")
        if stored_model is None:
            if claim:
                conn.execute("INSERT INTO meta (key, value) VALUES ('model_id', ?), ('dim', ?)", (model_id, str(dim)))
            return
        if stored_model != model_id or int(stored_dim or -1) != dim:
            raise ModelMismatchError(
                f"this store holds {stored_model} vectors ({stored_dim}-d); refusing {model_id} vectors ({dim}-d). "
                "Use another data directory, or re-embed the store (python -m pipeline reembed)."
            )

    def _write_vectors(self, model_id: str, rows: Sequence[int], blocks: Sequence[np.ndarray]) -> None:
        """Write each block of float32 vectors at its starting row of ``model_id``'s file, then fsync."""
        path = self._vector_path(model_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            for row, block in zip(rows, blocks, strict=True):
                os.pwrite(fd, block.tobytes(), row * block.shape[-1] * 4)
            os.fsync(fd)
        finally:
            os.close(fd)

    def stage_vectors(self, model_id: str, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Write vectors of another model for stored logos, beside the live ones (see :meth:`switch_model`).

        They go to that model's own vector file at each logo's row, so the live
        vectors stay untouched until the switch commits; a crash in between
        leaves the store as it was.
        """
        if model_id == self.model_id:
            raise StoreError(f"the store already holds {model_id} vectors; stage another model's")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids) or not np.isfinite(vectors).all():
            raise StoreError(f"expected {len(ids)} finite vectors, got an array of shape {vectors.shape}")
        rows = self._vector_rows(ids)
        self._write_vectors(model_id, [rows[int(i)] for i in ids], list(vectors))

    def switch_model(self, model_id: str, dim: int, staged: Iterable[int]) -> None:
        """Make the staged ``model_id`` vectors the live ones, in one transaction.

        Raises:
            StoreError: some stored logo has no staged vector (e.g. added meanwhile).
        """
        staged = {int(i) for i in staged}
        with self._transaction() as conn:
            old = self._meta(conn, "model_id")
            missing = [row[0] for row in conn.execute("SELECT id FROM logos") if row[0] not in staged]
            if missing:
                raise StoreError(f"{len(missing)} logo(s) have no {model_id} vector yet (e.g. #{missing[0]})")
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('model_id', ?), ('dim', ?)",
                         (model_id, str(int(dim))))
            conn.execute("UPDATE logos SET model_id = ?", (model_id,))
        if old and old != model_id:
            self._vector_path(old).unlink(missing_ok=True)

    def set_label(self, ids: Iterable[int], label: str | None, source: LabelSource | str, *, who: str = "local",
                  session: str | None = None, action: str | None = None) -> LabelChange:
        """Label (or, with ``label=None``, unlabel) logos, and log each change as an event.

        A machine label never replaces a human one: humans always win. Logos
        whose label and source are already the asked ones are left out of the
        change. ``who`` (a token's name, or "local") and ``session`` (the browser
        session that asked) go into the log, so that :meth:`undo_last` undoes
        one visitor's changes and never another's; calls that pass the same
        ``action`` id are undone together.
        """
        source = LabelSource.parse(source)
        label = clean_label(label)
        new_source = source.value if label else None
        ids = sorted({int(i) for i in ids})
        action = action or uuid.uuid4().hex
        with self._transaction() as conn:
            previous = self._changing(conn, ids, label, source)
            self._apply_labels(conn, action, {i: (label, new_source) for i in previous}, previous, who, session)
        return LabelChange(action, label, previous, who, session)

    @staticmethod
    def _changing(conn: sqlite3.Connection, ids: Sequence[int], label: str | None,
                  source: LabelSource) -> dict[int, Label]:
        """The current labels of those ``ids`` that setting ``label`` by ``source`` would change.

        A machine label never replaces a human one, and never comes back to a logo where a person rejected it.
        """
        new_source = source.value if label else None
        machine = source is LabelSource.MACHINE
        guard = " AND (label_source IS NULL OR label_source = 'machine')" if machine else ""
        previous: dict[int, Label] = {}
        for chunk in chunked(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            rejected = {row[0] for row in conn.execute(
                f"SELECT logo_id FROM rejections WHERE label = ? AND logo_id IN ({marks})", (label, *chunk))
            } if machine and label else set()
            for logo_id, old_label, old_source in conn.execute(
                    f"SELECT id, label, label_source FROM logos WHERE id IN ({marks}){guard}", chunk).fetchall():
                if (old_label, old_source) != (label, new_source) and logo_id not in rejected:
                    previous[logo_id] = (old_label, LabelSource(old_source) if old_source else None)
        return previous

    def reject(self, ids: Iterable[int], *, labels: Mapping[int, str] | None = None, who: str = "local",
               session: str | None = None, action: str | None = None) -> LabelChange:
        """A person says "not this label": the label is remembered as rejected for each logo, and removed from
        those that carry it.

        The rejected label of a logo is ``labels[id]`` when given (a proposal shown for a logo that carries
        another label, or none), else its current label. A machine never proposes it to that logo again; a
        person may still set it.
        """
        ids = sorted({int(i) for i in ids})
        labels = {int(i): clean_label(label) for i, label in (labels or {}).items()}
        action = action or uuid.uuid4().hex
        now = time.time()
        with self._transaction() as conn:
            current = self._changing(conn, ids, None, LabelSource.HUMAN)
            rejected = {i: labels.get(i) or current.get(i, (None, None))[0] for i in ids}
            conn.executemany("INSERT OR REPLACE INTO rejections (logo_id, label, who, action, at)"
                             " VALUES (?, ?, ?, ?, ?)",
                             [(i, label, who, action, now) for i, label in rejected.items() if label])
            previous = {i: old for i, old in current.items() if old[0] == rejected[i]}
            self._apply_labels(conn, action, dict.fromkeys(previous, (None, None)), previous, who, session)
        return LabelChange(action, None, previous, who, session)

    def rejection_count(self) -> int:
        """How many (logo, label) pairs people rejected."""
        return int(self._conn().execute("SELECT COUNT(*) FROM rejections").fetchone()[0])

    def machine_labelled(self, label: str | None = None, limit: int = 40) -> list[tuple[int, str, float | None]]:
        """``(id, label, confidence)`` of machine-labelled logos, least confident first (unknown confidence
        first of all), of one label or all."""
        where, args = ("AND label = ?", (label,)) if label else ("", ())
        return [(i, lab, conf) for i, lab, conf in self._conn().execute(
            f"SELECT id, label, confidence FROM logos WHERE label_source = 'machine' {where}"
            " ORDER BY confidence IS NOT NULL, confidence, id LIMIT ?", (*args, int(limit)))]

    def ids_with_label(self, label: str, source: LabelSource | None = None, limit: int | None = None) -> list[int]:
        """Ids of the logos carrying ``label`` (set by ``source`` if given), ascending, at most ``limit``."""
        where, args = ("AND label_source = ?", (source.value,)) if source else ("", ())
        return [row[0] for row in self._conn().execute(
            f"SELECT id FROM logos WHERE label = ? {where} ORDER BY id LIMIT ?", (label, *args, limit or -1))]

    def rejected(self, ids: Sequence[int]) -> dict[int, set[str]]:
        """The labels people rejected for each of ``ids`` (only ids with some)."""
        found: dict[int, set[str]] = {}
        for chunk in chunked([int(i) for i in ids], 500):
            marks = ",".join("?" * len(chunk))
            for logo_id, label in self._conn().execute(
                    f"SELECT logo_id, label FROM rejections WHERE logo_id IN ({marks})", chunk):
                found.setdefault(logo_id, set()).add(label)
        return found

    def _apply_labels(self, conn: sqlite3.Connection, action: str, new: Mapping[int, tuple[str | None, str | None]],
                      old: Mapping[int, Label], who: str, session: str | None, undoes: str | None = None,
                      write: bool = True) -> None:
        """Write new labels (unless ``write`` is False: the rows already hold them) and their events, in the
        caller's transaction. A label set by a person drops the machine's confidence, which no longer applies."""
        now = time.time()
        if write:
            conn.executemany(
                "UPDATE logos SET label = ?, label_source = ?,"
                " confidence = CASE WHEN ? = 'machine' THEN confidence END WHERE id = ?",
                [(label, source, source, logo_id) for logo_id, (label, source) in new.items()])
        conn.executemany(
            "INSERT INTO label_events (action, logo_id, old_label, old_source, new_label, new_source, who, session,"
            " undoes, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(action, logo_id, old[logo_id][0], old[logo_id][1].value if old[logo_id][1] else None, label, source,
              who, session, undoes, now) for logo_id, (label, source) in new.items()])

    def undo_last(self, session: str, who: str = "local") -> LabelChange | None:
        """Undo the last label action of ``session`` that is not undone yet (None if there is none).

        A logo whose label was changed again since (by anyone) keeps its newer
        label: an undo never reverts someone else's later work.
        """
        with self._transaction() as conn:
            row = conn.execute("SELECT action FROM label_events WHERE session = ? AND undone = 0 AND undoes IS NULL"
                               " ORDER BY id DESC LIMIT 1", (session,)).fetchone()
            if row is None:
                return None
            undone = row[0]
            restore: dict[int, tuple[str | None, str | None]] = {}
            current: dict[int, Label] = {}
            for logo_id, old_label, old_source, new_label, new_source in conn.execute(
                    "SELECT logo_id, old_label, old_source, new_label, new_source FROM label_events WHERE action = ?",
                    (undone,)).fetchall():
                now = conn.execute("SELECT label, label_source FROM logos WHERE id = ?", (logo_id,)).fetchone()
                if now is not None and tuple(now) == (new_label, new_source):
                    restore[logo_id] = (old_label, old_source)
                    current[logo_id] = (new_label, LabelSource(new_source) if new_source else None)
            action = uuid.uuid4().hex
            self._apply_labels(conn, action, restore, current, who, session, undoes=undone)
            conn.execute("UPDATE label_events SET undone = 1 WHERE action = ?", (undone,))
            conn.execute("DELETE FROM rejections WHERE action = ?", (undone,))
        return LabelChange(action, None, current, who, session)

    def label_history(self, logo_id: int | None = None, limit: int = 100,
                      before: int | None = None) -> list[dict[str, object]]:
        """The latest label events, newest first (of one logo, or of all); ``before`` pages back by event id."""
        clauses, args = [], []
        if logo_id is not None:
            clauses.append("logo_id = ?")
            args.append(int(logo_id))
        if before is not None:
            clauses.append("id < ?")
            args.append(int(before))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn().execute(
            "SELECT id, action, logo_id, old_label, old_source, new_label, new_source, who, session, undoes, undone, at"
            f" FROM label_events {where} ORDER BY id DESC LIMIT ?", (*args, int(limit))).fetchall()
        keys = ("event", "action", "logo_id", "old_label", "old_source", "new_label", "new_source", "who", "session",
                "undoes", "undone", "at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def set_threshold(self, label: str, threshold: float | None) -> None:
        """Set (or with None remove) the vote share ``label`` needs to be predicted."""
        label = clean_label(label)
        if label is None:
            raise BadInputError("a threshold needs a label")
        with self._transaction() as conn:
            if threshold is None:
                conn.execute("DELETE FROM label_thresholds WHERE label = ?", (label,))
            else:
                if not 0.0 <= float(threshold) <= 1.0:
                    raise BadInputError("a confidence threshold is between 0 and 1")
                conn.execute("INSERT OR REPLACE INTO label_thresholds VALUES (?, ?)", (label, float(threshold)))

    # -- reads -------------------------------------------------------------------------
    def thresholds(self) -> dict[str, float]:
        return dict(self._conn().execute("SELECT label, threshold FROM label_thresholds").fetchall())

    def content_version(self) -> str:
        """A value that changes whenever the stored vectors change: the model and the last logo id.

        Logos are never deleted (no method here removes one) and ids are never
        reused (``AUTOINCREMENT``), and vectors only change with the model, so
        any add or re-embed changes it. ``MAX`` on the primary key reads one
        b-tree path: the dashboard asks on every page load, and a ``COUNT(*)``
        (as before) scanned the table, 0.5 s at 4.4M logos.
        """
        return f"{self.model_id or ''}:{self.max_id()}"

    def labels_version(self) -> str:
        """A value that changes whenever labels change: the last logo id and the last label event id.

        Every label change writes a label event (:meth:`_apply_labels`, undos
        included) and a logo added with a label brings a new id, so two
        primary-key maxima tell, in constant time, what counting the labelled
        logos told in a table scan.
        """
        last_event = self._conn().execute("SELECT COALESCE(MAX(id), 0) FROM label_events").fetchone()[0]
        return f"{self.max_id()}:{last_event}"

    def random_id(self, draw: float) -> int | None:
        """A stored logo id picked by ``draw`` in [0, 1): the first id at or after that share of the id range."""
        top = self.max_id()
        row = self._conn().execute("SELECT id FROM logos WHERE id >= ? ORDER BY id LIMIT 1",
                                   (1 + int(draw * top),)).fetchone()
        return row[0] if row else None

    def client_ids(self, after: int = 0, limit: int | None = None) -> list[tuple[int, int]]:
        """``(id, client id)`` of logos with ``id > after`` in id order, at most ``limit``; the client id is the
        external id where the logo has one, else its id."""
        return [(row[0], row[1]) for row in self._conn().execute(
            "SELECT id, COALESCE(external_id, id) FROM logos WHERE id > ? ORDER BY id LIMIT ?",
            (int(after), -1 if limit is None else int(limit)))]

    def by_external_id(self, external_ids: Sequence[int]) -> dict[int, int]:
        """``{external id: logo id}`` for the external ids the store holds."""
        found: dict[int, int] = {}
        for chunk in chunked([int(i) for i in external_ids], 500):
            marks = ",".join("?" * len(chunk))
            found.update(self._conn().execute(
                f"SELECT external_id, id FROM logos WHERE external_id IN ({marks})", chunk).fetchall())
        return found

    def external_ids(self, ids: Sequence[int]) -> dict[int, int]:
        """``{logo id: external id}`` for the logos of ``ids`` that have one."""
        found: dict[int, int] = {}
        for chunk in chunked([int(i) for i in ids], 500):
            marks = ",".join("?" * len(chunk))
            found.update(self._conn().execute(
                f"SELECT id, external_id FROM logos WHERE id IN ({marks}) AND external_id IS NOT NULL",
                chunk).fetchall())
        return found

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM logos").fetchone()[0])

    def max_id(self) -> int:
        return int(self._conn().execute("SELECT COALESCE(MAX(id), 0) FROM logos").fetchone()[0])

    def get(self, ids: Sequence[int]) -> list[LogoRecord]:
        """Records for ``ids`` in the given order; unknown ids are skipped."""
        found: dict[int, LogoRecord] = {}
        for chunk in chunked([int(i) for i in ids], 500):
            marks = ",".join("?" * len(chunk))
            for row in self._conn().execute(
                f"SELECT {_RECORD_COLUMNS} FROM logos WHERE id IN ({marks})", chunk,
            ):
                found[row[0]] = _record(row)
        return [found[int(i)] for i in ids if int(i) in found]

    def labels(self, ids: Sequence[int]) -> dict[int, tuple[str | None, LabelSource | None]]:
        """Current label and label source of each id (labels change; read them at query time)."""
        result: dict[int, tuple[str | None, LabelSource | None]] = {}
        for chunk in chunked([int(i) for i in ids], 500):
            marks = ",".join("?" * len(chunk))
            for logo_id, label, source in self._conn().execute(
                f"SELECT id, label, label_source FROM logos WHERE id IN ({marks})", chunk
            ):
                result[logo_id] = (label, LabelSource(source) if source else None)
        return result

    def label_frame(self) -> pd.DataFrame:
        """Every logo's id, label and label source (columns ``id``, ``label``, ``source``), in id order."""
        import pandas as pd  # here, not at the top: writers (import scripts) start faster without it

        return pd.read_sql_query("SELECT id, label, label_source AS source FROM logos ORDER BY id", self._conn())

    def photo_frame(self) -> pd.DataFrame:
        """Every logo's id and the hash of the photo it was cut from (columns ``id``, ``image_hash``; None when
        not known), in id order. Apart from :meth:`label_frame`, which the map reads for millions of logos."""
        import pandas as pd

        return pd.read_sql_query("SELECT id, image_hash FROM logos ORDER BY id", self._conn())

    def label_counts(self) -> dict[str, int]:
        """Every label in use with its number of logos, most common first."""
        rows = self._conn().execute(
            "SELECT label, COUNT(*) FROM logos WHERE label IS NOT NULL GROUP BY label ORDER BY COUNT(*) DESC, label"
        ).fetchall()
        return dict(rows)

    def label_counts_by_source(self) -> dict[str, dict[str, int]]:
        """``{label: {"human": n, "machine": m}}`` for every label in use."""
        counts: dict[str, dict[str, int]] = {}
        for label, source, count in self._conn().execute(
            "SELECT label, label_source, COUNT(*) FROM logos WHERE label IS NOT NULL GROUP BY label, label_source"
        ):
            counts.setdefault(label, {})[source] = count
        return counts

    def ids(self) -> list[int]:
        """Every stored logo id, ascending."""
        return [row[0] for row in self._conn().execute("SELECT id FROM logos ORDER BY id")]

    def records(self, batch: int = 5000) -> Iterator[LogoRecord]:
        """Every stored logo, in id order, read in batches (an export of millions stays small in memory)."""
        last = 0
        while True:
            rows = self._conn().execute(f"SELECT {_RECORD_COLUMNS} FROM logos WHERE id > ? ORDER BY id LIMIT ?",
                                        (last, batch)).fetchall()
            if not rows:
                return
            yield from (_record(row) for row in rows)
            last = rows[-1][0]

    def photos(self) -> list[PhotoRecord]:
        """Every recorded photo, oldest first."""
        return [PhotoRecord(image_hash, path, width, height, logos, added, photo_id)
                for photo_id, image_hash, path, width, height, logos, added in self._conn().execute(
                    "SELECT id, image_hash, path, width, height, logos, added FROM photos ORDER BY id")]

    def has_photo(self, *, path: str | None = None, image_hash: str | None = None) -> bool:
        """Whether a photo with this path (as recorded) or this decoded-pixel hash went through the store."""
        column, value = ("path", path) if path is not None else ("image_hash", image_hash)
        return self._conn().execute(f"SELECT 1 FROM photos WHERE {column} = ? LIMIT 1", (value,)).fetchone() is not None

    def derived_labels(self) -> dict[int, Label]:
        """Each logo's label as its label events say: the newest event of each logo wins.

        The ``logos`` table keeps the current label beside the events (written in the same transaction) so that
        searches read it in one lookup; this replay is the check that both agree (the history is complete).
        """
        rows = self._conn().execute(
            "SELECT e.logo_id, e.new_label, e.new_source FROM label_events e JOIN"
            " (SELECT logo_id, MAX(id) AS last FROM label_events GROUP BY logo_id) m ON e.id = m.last")
        return {logo_id: (label, LabelSource(source) if source else None) for logo_id, label, source in rows}

    def has_image(self, image_hash: str) -> bool:
        """Whether logos of this image (by decoded-pixel hash) are already stored."""
        row = self._conn().execute("SELECT 1 FROM logos WHERE image_hash = ? LIMIT 1", (image_hash,)).fetchone()
        return row is not None

    def thumbnail(self, logo_id: int) -> bytes | None:
        row = self._conn().execute("SELECT webp FROM thumbnails WHERE logo_id = ?", (int(logo_id),)).fetchone()
        return row[0] if row else None

    def _matrix(self) -> np.memmap | None:
        """The vector file memory-mapped, re-mapped when it has grown."""
        model_id, dim = self.model_id, self.dim
        if model_id is None or dim is None:
            return None
        path = self._vector_path(model_id)
        size = path.stat().st_size if path.exists() else 0
        rows = size // (dim * 4)
        with self._map_lock:
            if self._map is None or self._map[0] != model_id or self._map[1] < rows:
                matrix = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, dim)) if rows else None
                self._map = (model_id, rows, matrix)
            return self._map[2]

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Vectors of ``ids`` (all must exist) as a ``[len(ids), dim]`` float32 array."""
        ids = [int(i) for i in ids]
        if not ids:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        rows = self._vector_rows(ids)
        matrix = self._matrix()
        return np.array(matrix[[rows[i] for i in ids]], dtype=np.float32)

    def _vector_rows(self, ids: Sequence[int]) -> dict[int, int]:
        """Each id's row in the vector files (all ids must exist)."""
        ids = [int(i) for i in ids]
        rows: dict[int, int] = {}
        for chunk in chunked(ids, 500):
            marks = ",".join("?" * len(chunk))
            rows.update(self._conn().execute(f"SELECT id, vector_row FROM logos WHERE id IN ({marks})", chunk))
        missing = [i for i in ids if i not in rows]
        if missing:
            raise LogoNotFoundError(f"unknown logo id(s): {', '.join(map(str, missing[:10]))}")
        return rows

    def iter_vectors(self, min_id: int = 0, max_id: int | None = None,
                     batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(ids, vectors)`` batches of every logo with ``min_id < id <= max_id``, in id order.

        ``max_id`` defaults to the newest id when the call is made, read *before* the
        vector file is mapped: logos added while the batches are read are left out
        (they come in the next read), instead of pointing past the mapped rows.
        """
        conn = self._conn()
        last = min_id
        upper = self.max_id() if max_id is None else max_id
        matrix = self._matrix()
        while last < upper:
            rows = conn.execute("SELECT id, vector_row FROM logos WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                                (last, upper, batch)).fetchall()
            if not rows:
                return
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            yield ids, np.array(matrix[[r[1] for r in rows]], dtype=np.float32)
            last = int(ids[-1])

    def stats(self) -> StoreStats:
        """Counts of logos and labels (the index fields are filled in by the service)."""
        total, labelled, human, machine, labels = self._conn().execute(
            "SELECT COUNT(*), COUNT(label), SUM(label_source = 'human'), SUM(label_source = 'machine'),"
            " COUNT(DISTINCT label) FROM logos"
        ).fetchone()
        return StoreStats(logos=total, labelled=labelled, human_labelled=human or 0, machine_labelled=machine or 0,
                          labels=labels, model_id=self.model_id, indexed=0, pending=total)


_RECORD_COLUMNS = ("id, image_hash, image_path, x0, y0, x1, y1, label, label_source, score, model_id, created,"
                   " confidence")


def _record(row: tuple) -> LogoRecord:
    logo_id, image_hash, image_path, x0, y0, x1, y1, label, source, score, model_id, created, confidence = row
    box = Box(x0, y0, x1, y1) if x0 is not None else None
    return LogoRecord(logo_id, image_hash, image_path, box, label, LabelSource(source) if source else None,
                      score, model_id, created, confidence)

