"""What every API area shares: the service, the admin-token dependency, the request gate, and upload helpers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, UploadFile
from fastapi.params import Depends as DependsParam

from pipeline.errors import BadInputError, ImageTooLargeError
from pipeline.service import LogoService
from pipeline.types import Neighbour
from web.auth import Access, AdminAuth, bearer_token
from web.limits import RequestGate
from web.schemas import NeighbourOut, NeighboursOut

PREFIX = "/api/v1"
JSON_BODY_BYTES = 1024 * 1024  # the JSON routes' bodies (ids, an embedding, a threshold) are small
FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries and the boxes/labels fields, on top of the file


def admin_dependency(auth: AdminAuth):
    """A FastAPI dependency that lets a request through only with the admin token (``X-Admin-Token`` or
    ``Authorization: Bearer``): 401 without a valid one, 403 on a read-only deployment."""

    def require_admin(x_admin_token: Annotated[str | None, Header()] = None,
                      authorization: Annotated[str | None, Header()] = None) -> None:
        access = auth.check(x_admin_token or bearer_token(authorization))
        if access is not Access.GRANTED:
            raise HTTPException(403 if access is Access.READ_ONLY else 401, access.message)

    return require_admin


@dataclass(frozen=True)
class ApiDeps:
    """One deployment's API context, handed to each area's router factory.

    Attributes:
        admin: The dependency of every write (:func:`admin_dependency`).
        heavy: The dependency of CPU-bound routes: the request gate (a bounded number run and wait; 503 past it).
    """

    service: LogoService
    auth: AdminAuth
    require_admin: Any
    admin: DependsParam
    heavy: DependsParam

    @classmethod
    def of(cls, service: LogoService, auth: AdminAuth, gate: RequestGate | None = None) -> ApiDeps:
        settings = service.settings
        gate = gate or RequestGate(settings.max_active, settings.max_queued, settings.queue_timeout)
        require_admin = admin_dependency(auth)
        return cls(service, auth, require_admin, Depends(require_admin), Depends(gate))

    @property
    def max_upload_bytes(self) -> int:
        return self.service.settings.max_upload_bytes

    @property
    def max_body_bytes(self) -> int:
        """A request body's cap while it streams: the upload cap plus the form's overhead."""
        return self.max_upload_bytes + FORM_OVERHEAD_BYTES


def read_upload(file: UploadFile, max_bytes: int) -> bytes:
    """The uploaded file's bytes, refused past ``max_bytes``."""
    data = file.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"the upload is larger than {max_bytes // (1024 * 1024)} MiB")
    return data


def json_list(text: str | None, name: str) -> list[Any] | None:
    """A form field that holds a JSON list (boxes, labels); None when absent."""
    if text in (None, ""):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise BadInputError(f"{name} must be a JSON list") from None
    if not isinstance(value, list):
        raise BadInputError(f"{name} must be a JSON list")
    return value


def neighbours_out(neighbours: list[Neighbour], client_ids: dict[int, int]) -> NeighboursOut:
    """Neighbours as robotoff-ann answers them, each logo by the id its client knows."""
    results = [NeighbourOut(logo_id=client_ids.get(n.id, n.id), distance=round(n.distance, 6), label=n.label)
               for n in neighbours]
    return NeighboursOut(results=results, count=len(results))
