"""The store's labels and their log: every change an event (who, which session, from what to what), undo per
session, rejections a machine never proposes again, per-label thresholds.

:class:`LabelLog` is part of :class:`pipeline.store.LogoStore`: its methods run on the store's SQLite
connection and transactions (``_conn``, ``_transaction``, ``max_id``), the current label kept beside its events
in the same transaction, so that searches read it in one lookup and :meth:`LabelLog.derived_labels` can check
both agree.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.errors import BadInputError
from pipeline.labels import clean_label
from pipeline.types import LabelSource
from pipeline.util import chunked
from pipeline.vocabulary import VocabularyEntry

if TYPE_CHECKING:
    import pandas as pd

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


class LabelLog:
    """Labels, their events, rejections and thresholds (a part of :class:`pipeline.store.LogoStore`)."""

    _conn: Callable[[], sqlite3.Connection]
    _transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]
    max_id: Callable[[], int]

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

    def machine_labelled(self, label: str | None = None,
                         limit: int = 40) -> list[tuple[int, str, float | None, str | None]]:
        """``(id, label, confidence, proposed_by)`` of machine-labelled logos, least confident first (unknown
        confidence first of all), of one label or all."""
        where, args = ("AND label = ?", (label,)) if label else ("", ())
        return [(i, lab, conf, by) for i, lab, conf, by in self._conn().execute(
            f"SELECT id, label, confidence, proposed_by FROM logos WHERE label_source = 'machine' {where}"
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
        caller's transaction. A label set by a person drops the machine's confidence and what named it, which no
        longer apply."""
        now = time.time()
        if write:
            conn.executemany(
                "UPDATE logos SET label = ?, label_source = ?,"
                " confidence = CASE WHEN ? = 'machine' THEN confidence END,"
                " proposed_by = CASE WHEN ? = 'machine' THEN proposed_by END WHERE id = ?",
                [(label, source, source, source, logo_id) for logo_id, (label, source) in new.items()])
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

    def add_vocabulary(self, entries: Sequence[VocabularyEntry]) -> int:
        """Add labels and their aliases to the vocabulary, all in one transaction (a failure stores none); a known
        label keeps its aliases and gains the new ones, so importing a file twice changes nothing.

        Returns:
            How many labels the vocabulary did not hold before.
        """
        now = time.time()
        with self._transaction() as conn:
            known = {label: json.loads(aliases)
                     for label, aliases in conn.execute("SELECT label, aliases FROM vocabulary")}
            rows = [(entry.label, json.dumps([*known.get(entry.label, []),
                                              *(a for a in entry.aliases if a not in known.get(entry.label, []))]), now)
                    for entry in entries]
            conn.executemany("INSERT INTO vocabulary (label, aliases, added) VALUES (?, ?, ?)"
                             " ON CONFLICT(label) DO UPDATE SET aliases = excluded.aliases", rows)
        return sum(entry.label not in known for entry in entries)

    def vocabulary_version(self) -> str:
        """A value that changes whenever the vocabulary gains a label or an alias (aliases are only ever added)."""
        count, size = self._conn().execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(aliases)), 0) FROM vocabulary").fetchone()
        return f"{count}:{size}"

    def vocabulary(self) -> list[VocabularyEntry]:
        """Every label the store knows, sorted: those of the vocabulary (with their aliases) and those logos carry,
        each with its number of logos."""
        named = {label: tuple(json.loads(aliases)) for label, aliases in
                 self._conn().execute("SELECT label, aliases FROM vocabulary")}
        counts = self.label_counts()
        return [VocabularyEntry(label, named.get(label, ()), counts.get(label, 0))
                for label in sorted(set(named) | set(counts))]

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

    def thresholds(self) -> dict[str, float]:
        return dict(self._conn().execute("SELECT label, threshold FROM label_thresholds").fetchall())

    def labels_version(self) -> str:
        """A value that changes whenever labels change: the last logo id and the last label event id.

        Every label change writes a label event (:meth:`_apply_labels`, undos
        included) and a logo added with a label brings a new id, so two
        primary-key maxima tell, in constant time, what counting the labelled
        logos told in a table scan.
        """
        last_event = self._conn().execute("SELECT COALESCE(MAX(id), 0) FROM label_events").fetchone()[0]
        return f"{self.max_id()}:{last_event}"

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

    def derived_labels(self) -> dict[int, Label]:
        """Each logo's label as its label events say: the newest event of each logo wins.

        The ``logos`` table keeps the current label beside the events (written in the same transaction) so that
        searches read it in one lookup; this replay is the check that both agree (the history is complete).
        """
        rows = self._conn().execute(
            "SELECT e.logo_id, e.new_label, e.new_source FROM label_events e JOIN"
            " (SELECT logo_id, MAX(id) AS last FROM label_events GROUP BY logo_id) m ON e.id = m.last")
        return {logo_id: (label, LabelSource(source) if source else None) for logo_id, label, source in rows}
