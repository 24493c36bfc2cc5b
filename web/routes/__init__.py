"""The API by area, one router factory each: ``ann`` (robotoff-ann), ``search``, ``labels``, ``review``,
``export`` and ``admin``; :func:`web.api.build_api` mounts them under ``/api/v1``."""
