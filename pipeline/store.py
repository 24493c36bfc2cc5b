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
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from pipeline.errors import StoreError
from pipeline.label_log import LabelLog
from pipeline.labels import clean_label
from pipeline.logo_texts import SCHEMA as TEXT_SCHEMA, LogoTexts
from pipeline.types import Box, LabelSource, LogoRecord, StoreStats
from pipeline.util import chunked
from pipeline.vector_file import VectorFile

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
CREATE TABLE IF NOT EXISTS vocabulary (label TEXT PRIMARY KEY, aliases TEXT NOT NULL, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rejections (
    logo_id INTEGER NOT NULL,
    label TEXT NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (logo_id, label)
);
"""

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
    proposed_by: str | None = None  # what named a machine label: "vote" (the neighbours) or "text" (its text)


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


class LogoStore(LabelLog, LogoTexts, VectorFile):
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
        conn.executescript(_SCHEMA + TEXT_SCHEMA)  # idempotent; executescript manages its own transaction
        columns = {row[1] for row in conn.execute("PRAGMA table_info(logos)")}
        if "external_id" not in columns:
            conn.execute("ALTER TABLE logos ADD COLUMN external_id INTEGER")  # a store made before external ids
        if "confidence" not in columns:
            conn.execute("ALTER TABLE logos ADD COLUMN confidence REAL")  # a store made before machine proposals
        if "proposed_by" not in columns:
            conn.execute("ALTER TABLE logos ADD COLUMN proposed_by TEXT")  # a store made before text proposals
        conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS logos_external_id ON logos(external_id)"
                     " WHERE external_id IS NOT NULL")

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
                         logo.confidence if label else None,
                         logo.proposed_by if label else None))
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
                    " external_id, confidence, proposed_by, model_id, vector_row, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

    def content_version(self) -> str:
        """A value that changes whenever the stored vectors change: the model and the last logo id.

        Logos are never deleted (no method here removes one) and ids are never
        reused (``AUTOINCREMENT``), and vectors only change with the model, so
        any add or re-embed changes it. ``MAX`` on the primary key reads one
        b-tree path: the dashboard asks on every page load, and a ``COUNT(*)``
        (as before) scanned the table, 0.5 s at 4.4M logos.
        """
        return f"{self.model_id or ''}:{self.max_id()}"

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

    def photo_frame(self) -> pd.DataFrame:
        """Every logo's id and the hash of the photo it was cut from (columns ``id``, ``image_hash``; None when
        not known), in id order. Apart from :meth:`label_frame`, which the map reads for millions of logos."""
        import pandas as pd

        return pd.read_sql_query("SELECT id, image_hash FROM logos ORDER BY id", self._conn())

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

    def has_image(self, image_hash: str) -> bool:
        """Whether logos of this image (by decoded-pixel hash) are already stored."""
        row = self._conn().execute("SELECT 1 FROM logos WHERE image_hash = ? LIMIT 1", (image_hash,)).fetchone()
        return row is not None

    def thumbnail(self, logo_id: int) -> bytes | None:
        row = self._conn().execute("SELECT webp FROM thumbnails WHERE logo_id = ?", (int(logo_id),)).fetchone()
        return row[0] if row else None

    def stats(self) -> StoreStats:
        """Counts of logos and labels (the index fields are filled in by the service)."""
        total, labelled, human, machine, labels = self._conn().execute(
            "SELECT COUNT(*), COUNT(label), SUM(label_source = 'human'), SUM(label_source = 'machine'),"
            " COUNT(DISTINCT label) FROM logos"
        ).fetchone()
        return StoreStats(logos=total, labelled=labelled, human_labelled=human or 0, machine_labelled=machine or 0,
                          labels=labels, model_id=self.model_id, indexed=0, pending=total)


_RECORD_COLUMNS = ("id, image_hash, image_path, x0, y0, x1, y1, label, label_source, score, model_id, created,"
                   " confidence, proposed_by")


def _record(row: tuple) -> LogoRecord:
    logo_id, image_hash, image_path, x0, y0, x1, y1, label, source, score, model_id, created, confidence, by = row
    box = Box(x0, y0, x1, y1) if x0 is not None else None
    return LogoRecord(logo_id, image_hash, image_path, box, label, LabelSource(source) if source else None,
                      score, model_id, created, confidence, by)

