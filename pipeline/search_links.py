"""Short-lived links to one visitor's search, so the map can show it to that visitor only.

The search tab and the map are separate pages (Gradio and Dash). A search is
handed from one to the other through an unguessable id in the map's link,
never through state the server shares between visitors: what one visitor
searched shows up on nobody else's map. Entries expire (``ttl`` seconds) and
the cache is bounded, so an abandoned search costs nothing for long.
"""

from __future__ import annotations

import secrets
import threading

from cachetools import TTLCache

from pipeline.types import PhotoSearchResult


class SearchLinks:
    """A bounded, expiring map from random ids to search results.

    Example:
        >>> links = SearchLinks(ttl=60)
        >>> link = links.put(PhotoSearchResult(10, 10, []))
        >>> links.get(link).width, links.get("not-a-link")
        (10, None)
    """

    def __init__(self, ttl: float = 3600.0, max_entries: int = 1024) -> None:
        self._cache: TTLCache[str, PhotoSearchResult] = TTLCache(maxsize=max_entries, ttl=ttl)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe

    def put(self, result: PhotoSearchResult) -> str:
        """Keep ``result`` and return its id (URL-safe, 128 bits of randomness)."""
        link = secrets.token_urlsafe(16)
        with self._lock:
            self._cache[link] = result
        return link

    def get(self, link: str | None) -> PhotoSearchResult | None:
        """The result kept under ``link``, or None if unknown or expired."""
        if not link:
            return None
        with self._lock:
            return self._cache.get(link)
