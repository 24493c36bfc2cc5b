"""Fetching a client's ``image_url`` without letting the client aim the server anywhere.

robotoff-ann's add route takes an image URL and the server downloads it. Left
open, that is a server-side request forgery: a client could make the server
read its own network (cloud metadata, admin pages) or hold a worker on a slow
or endless answer. So fetching is off unless hosts are allowed by name, and
each hop (redirects included) must name an allowed host that resolves to a
public address; the answer must come in time, be an image by its content type,
and stay under a byte cap while it streams.

A host name is resolved before the request and again by the HTTP client, so a
DNS answer that changes between the two (rebinding) is not ruled out: allow
only hosts you trust to resolve stably.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from pipeline.errors import FetchError, ImageTooLargeError


@dataclass(frozen=True)
class FetchConfig:
    """What may be fetched.

    Attributes:
        hosts: Host names the server may fetch from (exact, lower case); empty: fetching is off.
        max_bytes: Largest answer accepted.
        timeout: Seconds for the whole fetch, redirects included.
        allow_private: Accept hosts that resolve to private, loopback or link-local addresses.
        max_redirects: Redirects followed (each to an allowed host).
    """

    hosts: frozenset[str]
    max_bytes: int
    timeout: float = 10.0
    allow_private: bool = False
    max_redirects: int = 3


def _check_url(url: str, config: FetchConfig) -> None:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise FetchError(f"image_url must be an http(s) URL, got {url[:200]!r}")
    if host not in config.hosts:
        raise FetchError(f"images are not fetched from {host} (allowed: {', '.join(sorted(config.hosts)) or 'none'})")
    if config.allow_private:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)}
    except socket.gaierror:
        raise FetchError(f"{host} does not resolve") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            raise FetchError(f"{host} resolves to a non-public address ({ip}); images are not fetched from there")


def fetch_image(url: str, config: FetchConfig) -> bytes:
    """The bytes at ``url`` if every rule of ``config`` holds, else a :class:`FetchError`.

    Raises:
        FetchError: Fetching is off, the host (or a redirect's) is not allowed or not public, the server
            answers with an error, not an image, or too slowly.
        ImageTooLargeError: The answer is larger than ``config.max_bytes``.
    """
    if not config.hosts:
        raise FetchError("adding logos by image_url is off on this server (LOGOS_IMAGE_URL_HOSTS is empty)")
    deadline = time.monotonic() + config.timeout
    with httpx.Client(follow_redirects=False, timeout=config.timeout) as client:
        for _ in range(config.max_redirects + 1):
            _check_url(url, config)
            try:
                with client.stream("GET", url, timeout=max(0.1, deadline - time.monotonic())) as answer:
                    if answer.is_redirect:
                        url = urljoin(url, answer.headers.get("location", ""))
                        continue
                    if answer.status_code != 200:
                        raise FetchError(f"the image server answered {answer.status_code}")
                    kind = answer.headers.get("content-type", "").split(";")[0].strip().lower()
                    if not kind.startswith("image/"):
                        raise FetchError(f"the URL does not give an image (content type {kind or 'none'!r})")
                    return _read_capped(answer, config, deadline)
            except httpx.TimeoutException:
                raise FetchError(f"the image server did not answer within {config.timeout:g} s") from None
            except httpx.HTTPError as exc:
                raise FetchError(f"cannot fetch the image: {exc}") from None
    raise FetchError(f"more than {config.max_redirects} redirects")


def _read_capped(answer: httpx.Response, config: FetchConfig, deadline: float) -> bytes:
    """The body, refused as soon as it is known to pass the byte cap or the deadline (a trickling server)."""
    too_large = ImageTooLargeError(f"the image is larger than {config.max_bytes // (1024 * 1024)} MiB")
    declared = answer.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > config.max_bytes:
        raise too_large
    chunks, size = [], 0
    for chunk in answer.iter_bytes():
        size += len(chunk)
        if size > config.max_bytes:
            raise too_large
        if time.monotonic() > deadline:
            raise FetchError(f"the image server did not answer within {config.timeout:g} s")
        chunks.append(chunk)
    return b"".join(chunks)
