"""The watch folder: files dropped in a folder go into the archive by themselves.

Each instance is uploaded with REST `POST /instances`, so the same received-instance
callback as C-STORE de-identifies it; the source is deleted only once the archive has
confirmed it stored (or safely held) the instance. A journal in the archive database
(`intake_*` tables) makes a crash or reboot resume without losses or double ingest.

    settings = load_settings(config)
    intake = Intake(config, watch_dir, settings, uploader, keyring=keyring)
    summary = intake.run_once()            # or intake.watch(stop_event)

Nothing in the drop folder is followed through a link (`safefs`); rejected files are
sealed under the keyring (`rejects`); the journal's fingerprints are keyed (`journal`).
"""

from __future__ import annotations

from archive.intake.backoff import Backoff
from archive.intake.completeness import CompletenessTracker
from archive.intake.expand import dicomdir_references, extract_zip, is_dicomdir, private_workdir
from archive.intake.journal import Fingerprints, Journal
from archive.intake.rejects import Reject, RejectError, RejectStore, reason_path
from archive.intake.safefs import DropRoot, NotRegular, OutsideRoot
from archive.intake.settings import IntakeError, IntakeSettings, load_settings, read_token
from archive.intake.uploader import Uploader, UploadResult, Verdict
from archive.intake.watcher import Intake, Summary

__all__ = [
    "Backoff",
    "CompletenessTracker",
    "DropRoot",
    "Fingerprints",
    "Intake",
    "IntakeError",
    "IntakeSettings",
    "Journal",
    "NotRegular",
    "OutsideRoot",
    "Reject",
    "RejectError",
    "RejectStore",
    "Summary",
    "UploadResult",
    "Uploader",
    "Verdict",
    "dicomdir_references",
    "extract_zip",
    "is_dicomdir",
    "load_settings",
    "private_workdir",
    "read_token",
    "reason_path",
]
