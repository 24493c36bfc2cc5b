"""The text read on each stored logo, kept in the store (a part of :class:`pipeline.store.LogoStore`).

A logo's thumbnail never changes, so its text is read once (:class:`pipeline.usecases.reading.StoreTexts`, in
the background) and kept: the map finds logos by what they read ("bio"), and what text is worth in the store is
measured on it (:class:`pipeline.usecases.reading.TextEvidenceResult`) without reading a thumbnail twice.
A logo with no thumbnail (added as a vector alone) is never read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager

from pipeline.reading import fold

SCHEMA = ("CREATE TABLE IF NOT EXISTS logo_texts"
          " (logo_id INTEGER PRIMARY KEY, text TEXT NOT NULL, folded TEXT NOT NULL);")


class LogoTexts:
    """What each logo's thumbnail reads (a part of :class:`pipeline.store.LogoStore`)."""

    _conn: Callable[[], sqlite3.Connection]
    _transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def save_texts(self, texts: Iterable[tuple[int, str]]) -> None:
        """Keep what logos read (``(logo id, text)``, "" when nothing), in one transaction."""
        rows = [(int(logo_id), text, fold(text)) for logo_id, text in texts]
        with self._transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO logo_texts (logo_id, text, folded) VALUES (?, ?, ?)", rows)

    def texts(self, ids: Sequence[int]) -> dict[int, str]:
        """What each of ``ids`` reads, for those read ("" when nothing was read); unread ones are left out."""
        found: dict[int, str] = {}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            chunk = ids[start:start + 900]
            found.update(self._conn().execute(
                f"SELECT logo_id, text FROM logo_texts WHERE logo_id IN ({','.join('?' * len(chunk))})",
                chunk).fetchall())
        return found

    def unread_ids(self, limit: int) -> list[int]:
        """Up to ``limit`` logos with a thumbnail whose text has not been read, oldest first."""
        return [row[0] for row in self._conn().execute(
            "SELECT t.logo_id FROM thumbnails t LEFT JOIN logo_texts x ON x.logo_id = t.logo_id"
            " WHERE x.logo_id IS NULL ORDER BY t.logo_id LIMIT ?", (int(limit),))]

    def text_progress(self) -> tuple[int, int]:
        """``(logos read, logos with a thumbnail)``."""
        read, = self._conn().execute("SELECT COUNT(*) FROM logo_texts").fetchone()
        readable, = self._conn().execute("SELECT COUNT(*) FROM thumbnails").fetchone()
        return int(read), int(readable)

    def find_text(self, query: str, limit: int = 10_000) -> list[int]:
        """The logos whose text has a word starting with each word of ``query``, case and accents aside, in id
        order ("bio" finds "BIO", "Biologique" and "lait bio"; "coca cola" finds "Coca-Cola").

        Example:
            >>> import tempfile, numpy as np
            >>> from PIL import Image
            >>> from pipeline.store import LogoStore, NewLogo
            >>> store = LogoStore(tempfile.mkdtemp())
            >>> ids = store.add([NewLogo(crop=Image.new("RGB", (8, 8))) for _ in range(3)],
            ...                 np.eye(3, 4, dtype=np.float32), model_id="demo")
            >>> store.save_texts(zip(ids, ["Lait BIO", "Biologique", "Coca-Cola"]))
            >>> store.find_text("bio") == ids[:2], store.find_text("coca cola") == ids[2:], store.find_text("")
            (True, True, [])
        """
        words = fold(query).split()
        if not words:
            return []
        clauses = " AND ".join("(' ' || folded) LIKE ?" for _ in words)
        patterns = [f"% {word}%" for word in words]  # folded words are letters and digits: no LIKE wildcard
        return [row[0] for row in self._conn().execute(
            f"SELECT logo_id FROM logo_texts WHERE {clauses} ORDER BY logo_id LIMIT ?", (*patterns, int(limit)))]
