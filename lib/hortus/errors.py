"""Errors that carry a user-facing message (the CLI prints them without a traceback)."""

from __future__ import annotations


class HortusError(Exception):
    """A mistake the user can fix; the message says what and where."""

    exit_code = 2


class ContractError(HortusError):
    """A contract file is malformed."""


class TableNotFound(HortusError):
    """A table name is not in the catalog or has never been written."""


class LandingFileRefused(HortusError):
    """A whole landing file cannot be ingested (empty, truncated, changed schema...)."""


class SignatureError(HortusError):
    """A frame does not match a model's input signature (missing column, wrong type...)."""


class ArtifactError(HortusError):
    """A model artifact cannot be trusted or loaded (hash mismatch, untrusted types...)."""


class UnknownEntity(HortusError, KeyError):
    """A lookup named an entity the online store does not hold (not a vector of defaults).

    `entity` is the entity key that was not found, e.g. ``{"user_id": "u999999"}``.
    """

    def __init__(self, message: str, entity: dict | None = None):
        super().__init__(message)
        self.entity = dict(entity or {})

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
