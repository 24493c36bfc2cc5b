"""robotoff-ann compatibility: the ids clients know, named indexes, paging, and adds from an image URL."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from pipeline.embedders import base_name
from pipeline.errors import BadInputError, LogoNotFoundError
from pipeline.fetch import FetchConfig, fetch_image
from pipeline.images import image_sha256
from pipeline.store import NewLogo
from pipeline.types import Box, Neighbour
from pipeline.usecases.ingest import Ingest
from pipeline.usecases.parts import MAX_LOGO_ID, Parts
from pipeline.usecases.search import Search


class Ann:
    """What a robotoff-ann client (Robotoff, Hunger Games) calls, in its ids and shapes."""

    def __init__(self, parts: Parts, search: Search, ingest: Ingest) -> None:
        self.parts = parts
        self.search = search
        self.ingest = ingest

    # -- ids -----------------------------------------------------------------------------
    def resolve_client_id(self, client_id: int) -> int:
        """The store's id of a logo a client names: the logo with that external id if any, else that store id."""
        if not 0 < int(client_id) <= MAX_LOGO_ID:
            return int(client_id)
        return self.parts.store.by_external_id([client_id]).get(int(client_id), int(client_id))

    def client_ids(self, ids: Sequence[int]) -> dict[int, int]:
        """``{store id: the id clients know}``: the external id where a logo has one, else the store id."""
        external = self.parts.store.external_ids(ids)
        return {int(i): external.get(int(i), int(i)) for i in ids}

    def stored_ids(self, after: int = 0, limit: int | None = None) -> tuple[list[int], int | None]:
        """Stored logos by the id clients know (their external id where they have one), a page at a time.

        Args:
            after: The cursor of the previous page (0: from the start).
            limit: Logos on the page (None: all).

        Returns:
            ``(client ids, cursor of the next page)``; the cursor is None on the last page.
        """
        rows, next_after = self._page(after, limit)
        return [client for _, client in rows], next_after

    def page_of_logos(self, after: int, limit: int) -> tuple[list[int], int | None]:
        """Store ids of the logos after the cursor ``after``, and the next cursor (None on the last page)."""
        rows, next_after = self._page(after, limit)
        return [store_id for store_id, _ in rows], next_after

    def _page(self, after: int, limit: int | None) -> tuple[list[tuple[int, int]], int | None]:
        """``(store id, client id)`` rows after the cursor, at most ``limit``, and the next page's cursor."""
        rows = self.parts.store.client_ids(after, None if limit is None else limit + 1)
        if limit is None or len(rows) <= limit:
            return rows, None
        return rows[:limit], rows[limit - 1][0]

    def random_logo_id(self) -> int:
        """A stored logo picked at random (robotoff-ann's ``GET /ann``)."""
        logo_id = self.parts.store.random_id(random.random())
        if logo_id is None:
            raise LogoNotFoundError("the store is empty")
        return logo_id

    # -- named indexes -------------------------------------------------------------------
    def query_model_id(self) -> str:
        """The model id a raw embedding is assumed to come from: the store's, else the configured embedder's."""
        return self.parts.store.model_id or self.parts.settings.embedder

    def index_names(self) -> list[str]:
        """The named indexes a client may pick (robotoff-ann's ``index``): one per embedding model in the store."""
        return [self.query_model_id()]

    def check_index(self, name: str | None) -> None:
        """Refuse an index name the store does not have (None means the default one).

        A model's bare registry name stands for its current weights (``name`` for ``name@fingerprint``).
        """
        if name is not None and self.resolve_model_id(name) not in self.index_names():
            raise BadInputError(f"unknown index: {name} (known: {', '.join(self.index_names())})")

    def resolve_model_id(self, name: str) -> str:
        """The store's full model id when ``name`` is its bare registry name, else ``name`` unchanged."""
        current = self.query_model_id()
        return current if name == base_name(current) else name

    def from_embedding(self, vector: np.ndarray, k: int, model: str | None = None) -> list[Neighbour]:
        """Neighbours of a raw vector made by ``model`` (a bare registry name stands for the store's weights)."""
        return self.search.embedding(vector, k, self.resolve_model_id(model) if model else None)

    # -- adds ----------------------------------------------------------------------------
    def add_from_url(self, image_url: str, logos: Sequence[tuple[int, Sequence[float]]]) -> int:
        """robotoff-ann's add: the logos of the image at ``image_url``, each with the client's own id.

        Args:
            image_url: Where the photo is; fetched only from ``settings.image_url_hosts`` (:mod:`pipeline.fetch`).
            logos: ``(client id, [y_min, x_min, y_max, x_max])`` with coordinates in 0..1 of the photo.

        Returns:
            How many logos were added: ids the store already holds are skipped (and when all are, the image is
            not even fetched), as robotoff-ann does.
        """
        wanted: dict[int, Sequence[float]] = {}
        for client_id, box in logos:
            if not 0 < int(client_id) <= MAX_LOGO_ID:
                raise BadInputError(f"a logo id is a positive 64-bit integer, got {client_id}")
            if len(box) != 4 or not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in box):
                raise BadInputError(f"bounding_box is [y_min, x_min, y_max, x_max] in 0..1, got {list(box)[:8]}")
            wanted.setdefault(int(client_id), box)
        known = self.parts.store.by_external_id(list(wanted))
        new = {client_id: box for client_id, box in wanted.items() if client_id not in known}
        if not new:
            return 0
        settings = self.parts.settings
        hosts = frozenset(h.strip().lower() for h in settings.image_url_hosts.split(",") if h.strip())
        photo = self.parts.load(fetch_image(image_url, FetchConfig(hosts, settings.max_upload_bytes,
                                                                   settings.image_url_timeout,
                                                                   settings.image_url_allow_private)))
        image_hash = image_sha256(photo)
        additions = []
        for client_id, (y0, x0, y1, x1) in new.items():
            box = Box.from_sequence([x0 * photo.width, y0 * photo.height, x1 * photo.width, y1 * photo.height])
            additions.append(NewLogo(crop=self.parts.logo_crop(photo, box), box=box, image_hash=image_hash,
                                     external_id=client_id))
        return len(self.ingest.crops(additions))
