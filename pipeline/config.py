"""All run-time configuration, read from the environment in one place.

Every tunable knob of the pipeline is a field of :class:`Settings`, set by one
environment variable (:data:`VARIABLES`: the variable, its field, its parser, its
group among :data:`GROUPS` and the rule its value must keep). The CLI, the app
and the tests build one with :meth:`Settings.from_env` (optionally with
overrides) and pass it down, so no other module reads ``os.environ``; a value
that breaks its rule stops the start with one line naming the variable.
``docs/configuration.md`` lists them by group (a test keeps it so).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError


def _flag(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
    value = text.strip().lower()
    if value not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        raise ValueError(text)
    return value in {"1", "true", "yes", "on"}


_flag.__name__ = "flag (true/false)"

DEMO_SIZES = ("full", "small", "none")  # what an empty store is filled with (pipeline.demo)
RUNTIMES = ("onnxruntime", "torch")  # how the embedder runs (pipeline.embedders)
GROUPS = ("model", "vote", "storage", "server", "demo")  # the sections of docs/configuration.md

Check = Callable[[Any], bool]


def _between(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> tuple[Check, str]:
    lower = "(" if low_open else "["
    upper = ")" if high_open else "]"
    return ((lambda v: (low < v if low_open else low <= v) and (v < high if high_open else v <= high)),
            f"is in {lower}{low:g}, {high:g}{upper}")


def _at_least(low: int) -> tuple[Check, str]:
    return (lambda v: v >= low), f"must be at least {low}"


def _one_of(choices: tuple[str, ...]) -> tuple[Check, str]:
    return (lambda v: v in choices), f"is one of {', '.join(choices)}"


@dataclass(frozen=True)
class Variable:
    """One environment variable: the :class:`Settings` field it sets, how it is parsed, its group, its rule."""

    env: str
    field: str
    parse: Callable[[str], Any]
    group: str
    rule: tuple[Check, str] | None = None

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value``, naming the variable; None when it is fine (or unset)."""
        if self.rule is None or value is None:
            return None
        check, says = self.rule
        return None if check(value) else f"{self.env} ({self.field}) {says}, got {value!r}"


VARIABLES: tuple[Variable, ...] = (
    # the models: which embedder and detector, how crops are cut and run
    Variable("LOGOS_EMBEDDER", "embedder", str, "model"),
    Variable("LOGOS_EMBED_RUNTIME", "embed_runtime", str, "model", _one_of(RUNTIMES)),
    Variable("LOGOS_DETECTOR", "detector", str, "model"),
    Variable("LOGOS_DETECTOR_PATH", "detector_path", Path, "model"),
    Variable("LOGOS_DETECTOR_THRESHOLD", "detector_threshold", float, "model", _between(0, 1)),
    Variable("LOGOS_PROPOSAL_THRESHOLD", "proposal_threshold", float, "model", _between(0, 1)),
    Variable("LOGOS_CROP_PADDING", "crop_padding", float, "model", _between(0, 1)),
    Variable("LOGOS_BATCH_SIZE", "batch_size", int, "model", _at_least(1)),
    Variable("LOGOS_TORCH_THREADS", "torch_threads", int, "model", _at_least(0)),
    Variable("LOGOS_READ_TEXT", "read_text", int, "model", _between(0, 1000)),
    # the vote and its calibration: how a logo is named
    Variable("LOGOS_K", "k", int, "vote", _between(1, 1000)),
    Variable("LOGOS_MAX_DISTANCE", "max_distance", float, "vote", _between(0, 2, low_open=True)),
    Variable("LOGOS_MIN_CONFIDENCE", "min_confidence", float, "vote", _between(0, 1)),
    Variable("LOGOS_MACHINE_LABEL_WEIGHT", "machine_label_weight", float, "vote", _between(0, 1)),
    Variable("LOGOS_TARGET_PRECISION", "target_precision", float, "vote", _between(0, 1, low_open=True)),
    Variable("LOGOS_OPEN_SET_SHARE", "open_set_share", float, "vote", _between(0, 1, high_open=True)),
    Variable("LOGOS_DISTANCE_QUANTILE", "distance_quantile", float, "vote", _between(0, 1, low_open=True)),
    Variable("LOGOS_PROPOSE_MIN", "propose_min", float, "vote", _between(0, 1)),
    # where and how logos are kept: the store, the index, the map
    Variable("LOGOS_DATA_DIR", "data_dir", Path, "storage"),
    Variable("LOGOS_INDEX_BACKEND", "index_backend", str, "storage"),
    Variable("LOGOS_ANNOY_TREES", "n_trees", int, "storage", _at_least(1)),
    Variable("LOGOS_ANNOY_SEARCH_K", "search_k", int, "storage", _at_least(-1)),
    Variable("LOGOS_MILVUS_URI", "milvus_uri", str, "storage"),
    Variable("LOGOS_COMPACT_AFTER", "compact_after", int, "storage", _at_least(1)),
    Variable("LOGOS_MAP_POINTS", "map_points", int, "storage", _at_least(1)),
    # the web app: address, writes, and what one request may cost
    Variable("HOST", "host", str, "server"),
    Variable("PORT", "port", int, "server", _between(0, 65535)),
    Variable("ADMIN_TOKEN", "admin_token", str, "server"),
    Variable("LOGOS_CORS_ORIGINS", "cors_origins", str, "server"),
    Variable("LOGOS_MAX_IMAGE_PIXELS", "max_image_pixels", int, "server", _at_least(1)),
    Variable("LOGOS_MAX_UPLOAD_BYTES", "max_upload_bytes", int, "server", _at_least(1)),
    Variable("LOGOS_MAX_BOXES", "max_boxes", int, "server", _at_least(1)),
    Variable("LOGOS_MAX_UPLOAD_FILES", "max_upload_files", int, "server", _at_least(1)),
    Variable("LOGOS_UPLOAD_CACHE_BYTES", "upload_cache_bytes", int, "server", _at_least(1)),
    Variable("LOGOS_UPLOAD_CACHE_AGE", "upload_cache_age", int, "server", _at_least(1)),
    Variable("LOGOS_IMAGE_URL_HOSTS", "image_url_hosts", str, "server"),
    Variable("LOGOS_IMAGE_URL_TIMEOUT", "image_url_timeout", float, "server", _between(0, 3600, low_open=True)),
    Variable("LOGOS_IMAGE_URL_ALLOW_PRIVATE", "image_url_allow_private", _flag, "server"),
    Variable("LOGOS_MAX_ACTIVE", "max_active", int, "server", _at_least(1)),
    Variable("LOGOS_MAX_QUEUED", "max_queued", int, "server", _at_least(0)),
    Variable("LOGOS_QUEUE_TIMEOUT", "queue_timeout", float, "server", _between(0, 3600, low_open=True)),
    # what an empty store is filled with at first start
    Variable("LOGOS_DEMO", "demo", str, "demo", _one_of(DEMO_SIZES)),
)


@dataclass(frozen=True)
class Settings:
    """Configuration of one pipeline instance.

    Attributes:
        data_dir: Folder holding the store (SQLite + vectors) and the index.
        embedder: Registry name of the embedding model (see ``pipeline.embedders``).
        detector: Registry name of the logo detector (see ``pipeline.detectors``).
        detector_path: ONNX file of a YOLOv8-layout detector for ``detector="onnx"``
            (e.g. Open Food Facts' universal-logo-detector); also overrides the
            bundled model's file for ``"logo-detector"``.
        detector_threshold: Detector score from which a box is always answered, named or not.
        proposal_threshold: Detector score from which a box is a proposal: embedded and named like any other,
            answered only when it is named (:mod:`pipeline.proposals`); at or above ``detector_threshold``, no
            proposals. 0.25: on real photos of brands the detector never saw, the logos found and named rise from
            0.75 to 0.86 (docs/benchmarks.md#proposals).
        embed_runtime: ``onnxruntime`` (fastest on CPU) or ``torch``; same vectors.
        read_text: Most logos of one photo search whose text is read (:mod:`pipeline.reading`; the largest boxes
            first); 0 reads none. Each costs about 20-40 ms on 2 cores.
        crop_padding: Share of a box's width and height added on each side
            before a logo is cut from a photo (a little context helps the
            embedder; ``benchmarks/embedder_tta.py`` measures it).
        index_backend: Registry name of the ANN engine (``annoy``, ``exact`` or ``milvus``).
        k: Neighbours returned per logo and used for the kNN vote.
        n_trees: Annoy trees; more trees give better recall and a bigger index.
        search_k: Annoy nodes inspected per query (recall vs speed); -1 lets Annoy
            pick ``n_trees * k``, which misses neighbours on large indexes.
        milvus_uri: With the ``milvus`` backend, the Milvus server or cluster
            (``http://host:19530``); empty: embedded milvus-lite in the index folder.
        max_distance: Angular distance (0..2) beyond which the nearest neighbour is
            too far to name the logo: the prediction becomes ``unknown``.
        min_confidence: Default share of the vote a label needs; per-label
            thresholds stored in the store override it.
        machine_label_weight: Vote weight of a machine-labelled neighbour relative
            to a human-labelled one (humans outrank machines).
        target_precision: Share of given labels that should be right: the
            calibration (``python -m pipeline calibrate``) picks the default and
            per-label confidence thresholds that reach it on the store's own labels.
        open_set_share: Share of searched logos assumed to be of brands the store
            does not hold: the calibration weighs its open-set answers to it, so
            the higher it is, the more a label must stand out to be given.
        distance_quantile: Share of labelled logos that sit within the open-set
            distance limit of their nearest same-label logo: the calibration
            calls a query farther than that from its label unknown. Lower
            rejects more logos of unknown brands and more real ones; 1.0 keeps
            the farthest labelled logo in.
        propose_min: Confidence a kNN label needs to be stored as a machine
            proposal by ``import-photos`` (below the naming threshold too:
            people review proposals, least confident first).
        max_image_pixels: Uploads with more pixels are refused (decompression bombs).
        max_upload_bytes: Uploads larger than this are refused before decoding.
        max_boxes: Most logo boxes one search or add may give (drawn or sent); more is refused (400), and
            a detector keeps its best-scored this many. Bounds what one anonymous request costs.
        max_upload_files: Most files one upload to the web page may carry.
        upload_cache_bytes: Most bytes the web page's upload cache may hold; past that uploads are
            refused (503) until old ones expire.
        upload_cache_age: Seconds an upload to the web page is kept (the page's cache is swept a few
            times in that span).
        batch_size: Crops embedded per forward pass.
        torch_threads: Intra-op threads for torch; 0 keeps torch's default.
        host: Address the web app listens on.
        port: Port of the web app (7860, as Hugging Face Spaces expects).
        admin_token: Token that enables writes in the web app and API; None
            (the default) makes a deployment read-only.
        cors_origins: Origins allowed to call the API from a browser,
            comma-separated; ``*`` (any, as robotoff-ann) by default.
        image_url_hosts: Hosts the server may fetch images from when a client
            adds logos by ``image_url`` (comma-separated, exact names); empty
            (the default) turns fetching off.
        image_url_timeout: Seconds an image server has to answer, in all.
        image_url_allow_private: Let allowed hosts resolve to private,
            loopback or link-local addresses (off: a public host name cannot
            be pointed at the server's own network).
        max_active: CPU-bound requests (photo search, adds, batches) the web app
            runs at once; more only share the same cores and all get slower.
        max_queued: Such requests that may wait for a turn; past that the server
            answers 503 with ``Retry-After`` at once.
        queue_timeout: Seconds a request waits for its turn before a 503.
        compact_after: Logos added since the last index build past which the
            server rebuilds the index in the background (they are searched
            exactly until then, which grows slower with their number).
        map_points: Most logos the map draws as points. Past that it draws the
            density of every logo with a sample of points on top (human labels
            first), and zooming in draws every logo in view once they fit.
        demo: What an empty store is filled with at the app's first start:
            ``full`` (every simple-icons brand, thousands of labels), ``small``
            (43 bundled brands) or ``none`` (:mod:`pipeline.demo`).
    """

    data_dir: Path = Path("data")
    embedder: str = "efficientnet-lite0-logo-colour"
    detector: str = "logo-detector"
    detector_path: Path | None = None
    detector_threshold: float = 0.4
    proposal_threshold: float = 0.25
    crop_padding: float = 0.05
    read_text: int = 12
    embed_runtime: str = "onnxruntime"
    index_backend: str = "annoy"
    k: int = 10
    n_trees: int = 50
    search_k: int = 10_000
    milvus_uri: str = ""
    max_distance: float = 0.9
    min_confidence: float = 0.3
    machine_label_weight: float = 0.5
    target_precision: float = 0.95
    open_set_share: float = 0.5
    distance_quantile: float = 0.99
    propose_min: float = 0.5
    max_image_pixels: int = 40_000_000
    max_upload_bytes: int = 30 * 1024 * 1024
    max_boxes: int = 50
    max_upload_files: int = 20
    upload_cache_bytes: int = 2 * 1024 ** 3
    upload_cache_age: int = 3600
    batch_size: int = 8
    torch_threads: int = 0
    host: str = "0.0.0.0"
    port: int = 7860
    admin_token: str | None = None
    cors_origins: str = "*"
    image_url_hosts: str = ""
    image_url_timeout: float = 10.0
    image_url_allow_private: bool = False
    max_active: int = 2
    max_queued: int = 64
    queue_timeout: float = 30.0
    compact_after: int = 2000
    map_points: int = 200_000
    demo: str = "full"

    def __post_init__(self) -> None:
        """Every setting checked at once: a wrong one stops the start with one line naming its variable."""
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        for variable in VARIABLES:
            problem = variable.problem(getattr(self, variable.field))
            if problem:
                raise ConfigError(problem)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from environment variables, then apply ``overrides``.

        Args:
            env: Mapping to read instead of ``os.environ`` (tests pass a dict).
            **overrides: Field values that win over the environment; ``None``
                values are ignored so CLI flags can be passed through unconditionally.

        Example:
            >>> Settings.from_env({"LOGOS_K": "5"}, data_dir="/tmp/x").k
            5
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for variable in VARIABLES:
            var, field, parse = variable.env, variable.field, variable.parse
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[field] = parse(raw)
            except ValueError as exc:
                raise ConfigError(f"environment variable {var}={raw!r} is not a valid {parse.__name__}") from exc
        values.update({key: value for key, value in overrides.items() if value is not None})
        values.setdefault("data_dir", default_data_dir())
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


SPACES_STORAGE = Path("/data")  # Hugging Face Spaces' persistent storage, when the Space has it


def default_data_dir(persistent: Path = SPACES_STORAGE) -> Path:
    """Where the store lives when ``LOGOS_DATA_DIR`` is unset: on persistent storage if mounted, else ``./data``.

    Example:
        >>> default_data_dir(Path("/no/such/mount"))
        PosixPath('data')
    """
    return persistent / "logos" if persistent.is_dir() and os.access(persistent, os.W_OK) else Path("data")
