"""Vault errors: each says what went wrong and what to do next, never any key material."""

from __future__ import annotations

from archive.errors import ArchiveError


class KeyringError(ArchiveError):
    """The keyring cannot be used (missing, wrong passphrase, corrupt, unknown key)."""


class KeyringMissingError(KeyringError):
    """No keyring file where one was expected."""


class KeyringPassphraseError(KeyringError):
    """The passphrase does not open this keyring."""


class KeyringCorruptError(KeyringError):
    """The keyring file exists but is damaged or not a keyring."""


class TamperError(ArchiveError):
    """An encrypted file failed authentication: altered, truncated, swapped or misnamed.

    Carries the attachment identity and the reason so callers can log a security alert
    without parsing the message.
    """

    def __init__(self, message: str, *, uuid: str = "", content_type: int = -1, reason: str = ""):
        super().__init__(message)
        self.uuid = uuid
        self.content_type = content_type
        self.reason = reason or message


class VolumeError(ArchiveError):
    """The encrypted volume cannot be created, mounted, unmounted or inspected."""
