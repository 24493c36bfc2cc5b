"""Bounds on what anonymous visitors can leave on the server's disk through the web page.

Gradio's upload route (``/gradio_api/upload``) takes files from anyone who opens
the page and keeps them in its cache folder, up to a thousand files a request.
Gradio itself caps each file's size (``max_file_size``) and, with
``delete_cache``, deletes what it cached once it is old enough. This ASGI
middleware adds what it lacks:

- at most ``max_files`` files in one upload request (413 past that);
- at most ``max_cache_bytes`` in the cache folder: while it is fuller, uploads are
  refused with 503 and ``Retry-After`` until old files expire.

A request over the file count is cut where the count is passed: the upload route
sees its body end there, and whatever it kept of it is in its cache like any
upload (and expires with it); the client gets the 413.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UPLOAD_PATH = "/gradio_api/upload"
SIZE_CHECK_S = 5.0  # the cache folder is measured at most this often


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (0 if it does not exist); links are not followed."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                stat = os.lstat(os.path.join(root, name))
            except OSError:  # deleted meanwhile
                continue
            total += stat.st_size
    return total


def _boundary(scope: Scope) -> bytes | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == b"content-type":
            for part in value.split(b";")[1:]:
                name, _, given = part.strip().partition(b"=")
                if name.lower() == b"boundary" and given:
                    return given.strip(b'"')
    return None


async def _answer(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class UploadLimits:
    """ASGI middleware: a file count per upload request and a byte quota on the upload cache.

    Args:
        app: The ASGI app to guard (the whole server: only POSTs to ``.../gradio_api/upload`` are looked at).
        max_files: Files one upload request may carry.
        max_cache_bytes: Bytes the cache folder may hold before uploads are refused.
        folder: The cache folder (Gradio's upload folder), asked on each check.

    Example:
        >>> async def app(scope, receive, send): ...
        >>> guarded = UploadLimits(app, max_files=20, max_cache_bytes=2 << 30, folder=lambda: Path("/no/such"))
        >>> guarded.cache_full()
        False
    """

    def __init__(self, app: ASGIApp, *, max_files: int, max_cache_bytes: int, folder: Callable[[], Path]) -> None:
        self.app = app
        self.max_files = max_files
        self.max_cache_bytes = max_cache_bytes
        self.folder = folder
        self._measured: tuple[float, int] | None = None

    def cache_full(self) -> bool:
        """Whether the cache folder holds ``max_cache_bytes`` or more (measured at most every few seconds)."""
        now = time.monotonic()
        if self._measured is None or now - self._measured[0] > SIZE_CHECK_S:
            self._measured = (now, folder_bytes(self.folder()))
        return self._measured[1] >= self.max_cache_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope["path"].endswith(UPLOAD_PATH):
            await self.app(scope, receive, send)
            return
        if self.cache_full():
            await _answer(send, 503, "the server holds too many uploads right now; retry later",
                          [(b"retry-after", b"600")])
            return
        boundary = _boundary(scope)
        if boundary is None:  # not multipart: the upload route refuses it itself
            await self.app(scope, receive, send)
            return
        delimiter = b"--" + boundary
        state = {"delimiters": 0, "tail": b"", "over": False}

        async def counted() -> Message:
            if state["over"]:
                return {"type": "http.request", "body": b"", "more_body": False}
            message = await receive()
            if message["type"] != "http.request":
                return message
            data = state["tail"] + message.get("body", b"")
            # a delimiter spanning two chunks is counted once: the kept tail is too short to hold a whole one
            state["delimiters"] += data.count(delimiter)
            state["tail"] = data[-(len(delimiter) - 1):]
            if state["delimiters"] > self.max_files + 1:  # n parts have n + 1 delimiters (the closing one)
                state["over"] = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def quiet(message: Message) -> None:
            if not state["over"]:
                await send(message)

        try:
            await self.app(scope, counted, quiet)
        except Exception:
            if not state["over"]:
                raise
        if state["over"]:
            await _answer(send, 413, f"at most {self.max_files} files per upload")
