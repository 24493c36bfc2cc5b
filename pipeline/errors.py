"""Every error the pipeline raises on purpose, in one place.

The hierarchy says whose fault a failure is, so that each front end (CLI, HTTP
API, Gradio, Dash) can answer it the same way without knowing the module that
raised it:

- :class:`BadInputError`: the caller's input is wrong (a corrupt photo, a
  malformed box, an unknown logo id...). ``str(error)`` is safe to show.
- :class:`StoreError`: the store's state does not allow the operation (another
  embedding model, an empty store...). Also safe to show.
- :class:`ConfigError`: the deployment is misconfigured (unknown model name,
  missing weights). The operator's fault, never the caller's.

Anything else that escapes is a bug: the HTTP layer answers 500 and logs it.
``web/errors.py`` holds the one table from these classes to HTTP codes.
"""

from __future__ import annotations


class LogoError(Exception):
    """Base of every error the pipeline raises on purpose; the message is meant for a person."""


class BadInputError(LogoError, ValueError):
    """The caller's input cannot be used (HTTP 400)."""


class ImageError(BadInputError):
    """An input that cannot be used as an image; ``str(error)`` is safe to show a user."""

    code = "bad_image"


class EmptyImageError(ImageError):
    code = "empty_file"


class NotAnImageError(ImageError):
    code = "not_an_image"


class TruncatedImageError(ImageError):
    code = "truncated_image"


class ImageTooLargeError(ImageError):
    """An upload over the byte or pixel cap (HTTP 413)."""

    code = "image_too_large"


class NotFoundError(BadInputError):
    """Something the caller named does not exist (HTTP 404)."""


class LogoNotFoundError(NotFoundError):
    """A logo id that the store does not hold."""


class DatasetError(BadInputError):
    """A detection dataset (YOLO txt, COCO JSON) that cannot be read; the message names the file and line."""


class FetchError(BadInputError):
    """An image URL that is not allowed or does not give an image (host, address, size, type, time)."""


class StoreError(LogoError, RuntimeError):
    """A store operation that its current state does not allow (HTTP 409); the message is meant for the user."""


class NotReadyError(StoreError):
    """The store is still being built and cannot answer yet (HTTP 503 with ``Retry-After``)."""

    def __init__(self, message: str, retry_after: int = 10) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelMismatchError(StoreError):
    """Vectors of one embedding model offered to a store (or index) of another."""


class ConfigError(LogoError, ValueError):
    """A configuration that cannot work: unknown registry name, missing weights, bad setting."""


class DetectorError(ConfigError):
    """A detector model that cannot be used: missing, not ONNX, or not in the expected layout."""


class EmbedderError(ConfigError):
    """An embedder that cannot be created (unknown name, weights not available offline...)."""
