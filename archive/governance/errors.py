"""Governance refusals: each says which rule refused and what the user can do next.

Every class derives from ArchiveError, so the CLI prints the message as one line. Tests
and adapters catch the specific class; users only ever read the message.
"""

from __future__ import annotations

from archive.errors import ArchiveError


class GovernanceError(ArchiveError):
    """A governance rule refused the action, or its records are inconsistent."""


class GovernancePolicyError(GovernanceError):
    """policies/governance is missing, malformed, or drops a required clause."""


class NotFoundError(GovernanceError):
    """The request, proposal, recipient or record named does not exist."""


class InvalidInputError(GovernanceError):
    """An argument is malformed (empty, wrong format, naive datetime...)."""


class PurposeRefusedError(GovernanceError):
    """The purpose is commercial or not one the policy lists."""


class LevelRefusedError(GovernanceError):
    """A case's de-identification level does not allow this destination."""


class NotAuthorisedError(GovernanceError):
    """The person lacks the role this step needs, or may not act on their own request."""


class StateError(GovernanceError):
    """The record is not in a state that allows this step (already decided, refused...)."""


class ExpiredError(GovernanceError):
    """The approval's expiry has passed."""


class DownloadLimitError(GovernanceError):
    """The approval's number of downloads is used up."""


class RecipientRefusedError(GovernanceError):
    """The recipient's kind is commercial or not one the policy lists."""


class QuorumError(GovernanceError):
    """Too few eligible board members approved."""


class UndertakingMissingError(GovernanceError):
    """No signed undertaking is recorded for the share."""


class WithdrawnCaseError(GovernanceError):
    """A case was withdrawn by the patient's objection and may not go anywhere."""


class WipeRefusedError(GovernanceError):
    """The wipe's preconditions are not met."""


class CertificateError(GovernanceError):
    """The wipe certificate is incomplete or cannot be made final yet."""
