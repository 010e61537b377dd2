"""De-identification: DICOM bytes + policy + secrets -> released bytes or quarantine.

policy = load_policy(POLICIES_DIR)
result = deidentify(data, policy, DeidSecrets(key32))
if result.released is not None: store(result.released)
else: hold(result.quarantined_bytes, result.quarantine_reason)
"""

from archive.deid.engine import DeidInputError, DeidResult, deidentify
from archive.deid.keyed import DeidSecrets, map_uid, pseudonym_for
from archive.deid.policy import DeidPolicy, load_policy
from archive.deid.residual import scan_text

__all__ = [
    "DeidInputError",
    "DeidPolicy",
    "DeidResult",
    "DeidSecrets",
    "deidentify",
    "load_policy",
    "map_uid",
    "pseudonym_for",
    "scan_text",
]
