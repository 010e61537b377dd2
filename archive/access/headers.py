"""Credentials from HTTP headers, as Orthanc's filter hands them over (lowercase names)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime

from archive.access.principal import AuthFailure, Principal
from archive.access.store import AccessStore

MAX_AUTHORIZATION = 4096


def authenticate_headers(
    store: AccessStore, headers: Mapping[str, str], now: datetime
) -> Principal | AuthFailure:
    """Authenticate `Authorization: Basic ...` or `Authorization: Bearer ...`.

    No header gives AuthFailure("no_credentials"): the decision then applies only the
    anonymous allow-list. Header names are matched case-insensitively.
    """
    value = headers.get("authorization")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if not value:
        return AuthFailure("no_credentials")
    if len(value) > MAX_AUTHORIZATION:
        return AuthFailure("malformed")
    scheme, _, credentials = value.strip().partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "bearer":
        return store.authenticate_bearer(credentials, now)
    if scheme != "basic":
        return AuthFailure("malformed")
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return AuthFailure("malformed")
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        return AuthFailure("malformed")
    return store.authenticate_basic(user, password, now)
