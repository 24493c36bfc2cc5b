"""The one place where errors become HTTP answers.

Typed pipeline errors (``pipeline/errors.py``) say whose fault a failure is;
this table turns them into status codes. The most specific class wins. Only the
caller's mistakes are 4xx; anything unexpected is a 500 with a short message,
and its traceback goes to the log, never to the client.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from pipeline.errors import (BadInputError, ConfigError, ImageTooLargeError, LogoError, ModelMismatchError,
                             NotFoundError, NotReadyError, StoreError)
from web.limits import OverloadedError

log = logging.getLogger("web.errors")

# most specific first: the first class an error is an instance of decides
STATUS: tuple[tuple[type[LogoError], int], ...] = (
    (ImageTooLargeError, 413),
    (NotFoundError, 404),
    (BadInputError, 400),
    (ModelMismatchError, 409),
    (NotReadyError, 503),
    (StoreError, 409),
    (ConfigError, 500),
    (OverloadedError, 503),
)


def status_of(error: LogoError) -> int:
    """The HTTP status for a pipeline error.

    Example:
        >>> from pipeline.errors import LogoNotFoundError
        >>> status_of(LogoNotFoundError("no logo 7")), status_of(BadInputError("bad box"))
        (404, 400)
    """
    return next((status for kind, status in STATUS if isinstance(error, kind)), 500)


def install_error_handlers(app: FastAPI) -> None:
    """Answer pipeline errors with their status and ``{"detail": message}``; anything else with a logged 500."""

    def known(request: Request, exc: Exception) -> JSONResponse:
        status = status_of(exc)  # type: ignore[arg-type]
        if isinstance(exc, OverloadedError | NotReadyError):  # the client's cue to come back later, not a failure
            return JSONResponse({"detail": str(exc)}, status_code=status,
                                headers={"Retry-After": str(exc.retry_after)})
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed unexpectedly", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error; the server log has the details"}, status_code=500)

    app.add_exception_handler(LogoError, known)
    app.add_exception_handler(Exception, unexpected)
