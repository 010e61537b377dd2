"""The archive's own DICOMweb for its browser viewer (FORMAT.md): QIDO-RS, WADO-RS
metadata and frames from the vault, per-study access through archive.core, audit once
per study opened, and quiz-mode redaction."""

from archive.dicomweb.policy import ViewerPolicy, ViewerPolicyError, load_viewer_policy
from archive.dicomweb.service import Answer, DicomWeb, Request

__all__ = ["Answer", "DicomWeb", "Request", "ViewerPolicy", "ViewerPolicyError",
           "load_viewer_policy"]  # fmt: skip
