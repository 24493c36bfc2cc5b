"""The store's vectors: one append-only float32 file per embedding model, memory-mapped for bulk reads, written
before the rows that point at them are committed (crash safety), and re-embedded by staging another model's file
beside the live one and switching in one transaction.

:class:`VectorFile` is part of :class:`pipeline.store.LogoStore` and runs on its connection and metadata.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np

from pipeline.errors import LogoNotFoundError, ModelMismatchError, StoreError
from pipeline.util import chunked


class VectorFile:
    """Vectors of the stored logos (a part of :class:`pipeline.store.LogoStore`)."""

    data_dir: Path
    _conn: Callable[[], sqlite3.Connection]
    _transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]
    _meta: Callable[[sqlite3.Connection, str], str | None]
    max_id: Callable[[], int]
    model_id: str | None
    dim: int | None
    _map_lock: threading.Lock
    _map: tuple[str, int, np.memmap] | None

    def _vector_path(self, model_id: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id)
        return self.data_dir / "vectors" / f"{safe}.f32"

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
