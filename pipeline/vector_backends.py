"""Vector index backends: one class per engine behind one small interface, looked up by name in a registry.

``annoy`` (the default, files memory-mapped by every process), ``exact`` (numpy
brute force) and ``milvus`` (a vector database: embedded milvus-lite in a local
file, or a Milvus server or cluster; optional, ``requirements-milvus.txt``). A new
engine plugs in without touching callers; :class:`pipeline.index.LogoIndex` is
what the service uses on top of them.

All distances are angular distances between unit vectors, ``sqrt(2 - 2 cos)``
(0 = identical, 2 = opposite), which is what Annoy's ``angular`` metric returns.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from annoy import AnnoyIndex

from pipeline.errors import ConfigError, StoreError
from pipeline.registry import Registry
from pipeline.util import atomic_write_json

log = logging.getLogger(__name__)

Batches = Iterable[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class IndexConfig:
    """How to build and query an index.

    Attributes:
        backend: Registry name of the engine (``annoy`` or ``exact``).
        n_trees: Annoy trees (build time and size grow with it, so does recall).
        search_k: Annoy nodes inspected per query; -1 means ``n_trees * k``.
        milvus_uri: Milvus server or cluster to use (``LOGOS_MILVUS_URI``); empty: milvus-lite, one local file
            per index generation.
    """

    backend: str = "annoy"
    n_trees: int = 50
    search_k: int = -1
    milvus_uri: str = ""  # milvus: a server (http://host:19530) or "" for milvus-lite in the index folder


class VectorIndex(ABC):
    """A built nearest-neighbour index over ``(id, unit vector)`` pairs.

    File-based engines are immutable once built (new logos wait in :class:`LogoIndex`'s exact delta until the
    next build); a ``live`` engine (a database) takes new logos directly through :meth:`add`.
    """

    name: ClassVar[str]
    live: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def build(cls, batches: Batches, dim: int, path: Path, config: IndexConfig) -> VectorIndex:
        """Index every vector of ``batches`` and save the result under ``path`` (a file stem)."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path, dim: int, config: IndexConfig) -> VectorIndex:
        """Open an index saved by :meth:`build` (memory-mapped where the engine can)."""

    @abstractmethod
    def query(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest ``(ids, distances)``, nearest first."""

    @abstractmethod
    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Index more vectors now (live engines only; an id already there is replaced)."""
        raise NotImplementedError(f"the {self.name} index is rebuilt, not added to")

    @classmethod
    def drop(cls, path: Path, config: IndexConfig) -> None:
        """Remove what :meth:`build` made outside ``path``'s files (a server's collection); files are removed
        by the caller."""


INDEX_BACKENDS = Registry[type[VectorIndex]]("index backend")


def register_backend(cls: type[VectorIndex]) -> type[VectorIndex]:
    """Class decorator adding an engine to :data:`INDEX_BACKENDS` under ``cls.name``."""
    return INDEX_BACKENDS.register(cls.name, cls, (cls.__doc__ or "").strip().split("\n")[0])


def get_backend(name: str) -> type[VectorIndex]:
    """The engine registered as ``name``, with a clear error for unknown names."""
    return INDEX_BACKENDS.get(name)


def angular_from_cosine(cosine: np.ndarray) -> np.ndarray:
    """Annoy's angular distance for unit vectors: ``sqrt(2 - 2 cos)``."""
    return np.sqrt(np.clip(2.0 - 2.0 * cosine, 0.0, 4.0))


@register_backend
class ExactIndex(VectorIndex):
    """Brute-force search with numpy: exact, fine up to ~100k vectors, used for the delta."""

    name = "exact"

    def __init__(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.vectors = np.asarray(vectors, dtype=np.float32)

    @classmethod
    def from_batches(cls, batches: Batches, dim: int) -> ExactIndex:
        id_parts, vector_parts = [np.zeros(0, np.int64)], [np.zeros((0, dim), np.float32)]
        for ids, vectors in batches:
            id_parts.append(ids)
            vector_parts.append(vectors)
        return cls(np.concatenate(id_parts), np.concatenate(vector_parts))

    @classmethod
    def build(cls, batches: Batches, dim: int, path: Path, config: IndexConfig) -> ExactIndex:
        index = cls.from_batches(batches, dim)
        with open(path, "wb") as handle:
            np.savez(handle, ids=index.ids, vectors=index.vectors)
        return index

    @classmethod
    def load(cls, path: Path, dim: int, config: IndexConfig) -> ExactIndex:
        with np.load(path) as data:
            return cls(data["ids"], data["vectors"])

    def query(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.ids) == 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        distances = angular_from_cosine(self.vectors @ vector)
        top = np.argpartition(distances, k - 1)[:k] if k < len(distances) else np.arange(len(distances))
        top = top[np.argsort(distances[top], kind="stable")]
        return self.ids[top], distances[top].astype(np.float32)

    def __len__(self) -> int:
        return len(self.ids)


@register_backend
class AnnoyVectorIndex(VectorIndex):
    """Spotify's Annoy (angular), memory-mapped on load: many processes share one copy."""

    name = "annoy"

    def __init__(self, index: AnnoyIndex, size: int, config: IndexConfig) -> None:
        self.index = index
        self.size = size
        self.config = config

    @classmethod
    def build(cls, batches: Batches, dim: int, path: Path, config: IndexConfig) -> AnnoyVectorIndex:
        index = AnnoyIndex(dim, "angular")
        size = 0
        for ids, vectors in batches:
            for logo_id, vector in zip(ids.tolist(), vectors, strict=True):
                index.add_item(logo_id, vector)
            size += len(ids)
        index.build(config.n_trees, n_jobs=-1)
        index.save(str(path))
        index.unload()
        loaded = cls.load(path, dim, config)
        loaded.size = size
        return loaded

    @classmethod
    def load(cls, path: Path, dim: int, config: IndexConfig) -> AnnoyVectorIndex:
        index = AnnoyIndex(dim, "angular")
        index.load(str(path))  # mmap: cheap, shared between processes
        # Annoy reports max id + 1 items; the exact count lives in the generation's info.
        return cls(index, index.get_n_items(), config)

    def query(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.size == 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        ids, distances = self.index.get_nns_by_vector(vector.tolist(), k, search_k=self.config.search_k,
                                                      include_distances=True)
        return np.asarray(ids, dtype=np.int64), np.asarray(distances, dtype=np.float32)

    def __len__(self) -> int:
        return self.size


@register_backend
class MilvusVectorIndex(VectorIndex):
    """Milvus through pymilvus: adds go straight in, searches are the database's (cosine, AUTOINDEX).

    Without ``milvus_uri`` each generation is a milvus-lite file beside the other index files (one process
    per file: milvus-lite is embedded); with it, a collection per generation on that server or cluster, which
    any number of app processes share. Labels stay in the SQLite store: Milvus holds ids and vectors only.
    """

    name = "milvus"
    live = True

    def __init__(self, client: Any, collection: str, size: int) -> None:
        self.client = client
        self.collection = collection
        self.size = size
        self._lock = threading.Lock()

    @staticmethod
    def _connect(path: Path, config: IndexConfig) -> tuple[Any, str]:
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise ConfigError("the milvus index backend needs pymilvus: pip install -r requirements-milvus.txt"
                              ) from None
        collection = "logos_" + "".join(c if c.isalnum() else "_" for c in Path(path).name)
        uri = config.milvus_uri or f"{path}.db"
        return MilvusClient(uri), collection

    @classmethod
    def build(cls, batches: Batches, dim: int, path: Path, config: IndexConfig) -> MilvusVectorIndex:
        client, collection = cls._connect(path, config)
        if client.has_collection(collection):
            client.drop_collection(collection)  # a crashed build of the same generation
        client.create_collection(collection, dimension=dim, metric_type="COSINE", auto_id=False, id_type="int")
        # a marker file per generation: the folder lists generations the same way whatever the engine
        atomic_write_json(Path(path), {"collection": collection, "server": bool(config.milvus_uri)})
        index = cls(client, collection, 0)
        for ids, vectors in batches:
            index.add(ids, vectors)
        client.flush(collection)  # sealed and indexed: a growing segment is searched far slower
        return index

    @classmethod
    def load(cls, path: Path, dim: int, config: IndexConfig) -> MilvusVectorIndex:
        client, collection = cls._connect(path, config)
        if not client.has_collection(collection):
            raise StoreError(f"milvus collection {collection} is gone; rebuild the index")
        return cls(client, collection, int(client.get_collection_stats(collection)["row_count"]))

    @classmethod
    def drop(cls, path: Path, config: IndexConfig) -> None:
        if config.milvus_uri:  # milvus-lite generations are files, removed with the others
            client, collection = cls._connect(path, config)
            if client.has_collection(collection):
                client.drop_collection(collection)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32)
        for start in range(0, len(ids), 5000):
            rows = [{"id": int(i), "vector": v.tolist()} for i, v in zip(ids[start:start + 5000],
                                                                        vectors[start:start + 5000], strict=True)]
            with self._lock:
                self.client.upsert(self.collection, rows)
        with self._lock:
            self.size = int(self.client.get_collection_stats(self.collection)["row_count"])

    def query(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.size == 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        with self._lock:
            hits = self.client.search(self.collection, [np.asarray(vector, np.float32).tolist()], limit=k,
                                      output_fields=[])[0]
        ids = np.array([hit["id"] for hit in hits], dtype=np.int64)
        cosines = np.array([hit["distance"] for hit in hits], dtype=np.float32)  # COSINE: a similarity
        return ids, angular_from_cosine(cosines).astype(np.float32)

    def __len__(self) -> int:
        return self.size
