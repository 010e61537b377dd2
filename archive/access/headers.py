"""Credentials from HTTP headers, as Orthanc's filter hands them over (lowercase names)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime

from archive.access.facade import AccessStore
from archive.access.principal import AuthFailure, Principal

MAX_AUTHORIZATION = 4096


def authenticate_headers(
    store: AccessStore, headers: Mapping[str, str], now: datetime, address: str | None = None
) -> Principal | AuthFailure:
    """Authenticate `Authorization: Basic ...` or `Authorization: Bearer ...`.

    No header gives AuthFailure("no_credentials"): the decision then applies only the
    anonymous allow-list. Header names are matched case-insensitively. With the client's
    `address`, failures back off per (account, address) and per address (throttle.py);
    a malformed header counts as a failure from that address.
    """
    value = headers.get("authorization")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if not value:
        return AuthFailure("no_credentials")
    if len(value) > MAX_AUTHORIZATION:
        return _malformed(store, now, address)
    scheme, _, credentials = value.strip().partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "bearer":
        return store.authenticate_bearer(credentials, now, address)
    if scheme != "basic":
        return _malformed(store, now, address)
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return _malformed(store, now, address)
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        return _malformed(store, now, address)
    return store.authenticate_basic(user, password, now, address)


def _malformed(store: AccessStore, now: datetime, address: str | None) -> AuthFailure:
    """A header nobody's client sends: refused, and counted against the address."""
    return store.authenticate_bearer("", now, address)
