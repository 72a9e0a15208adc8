"""The HTTP API: FastAPI over the service layer, with pluggable auth, roles and limits.

``taskrt api`` serves it; :func:`create_app` builds it around a runtime and a service.
"""

from __future__ import annotations

from taskrt.api.app import create_app, create_app_from_settings, openapi_document

__all__ = ["create_app", "create_app_from_settings", "openapi_document"]
