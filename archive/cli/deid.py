"""`archive deid SRC DEST`: preview offline what ingest would do with some DICOM files.

Exactly ingest's pipeline (archive.ingest.IngestService: header engine, free text, the
pixel step with OCR and templates, the face check), with the same policies and
pseudonym key, so the preview shows the pseudonyms, UIDs, masks and holds ingest would
produce. Released and masked files are named by their new SOP Instance UID (source file
names may carry patient names); held and refused files are listed with their reasons
and not written. ``--deface`` removes the facial surface of released series that cover
a face (the copy a publication needs).
"""

from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path
from typing import Annotated

import typer
from pydicom import dcmread

from archive.audit import AuditEvent, audit_log_for
from archive.cli.common import HomeOption, JsonOption, actor, emit_json, fail, load
from archive.config import ArchiveConfig
from archive.deid import DeidSecrets, load_policy
from archive.errors import ArchiveError
from archive.ingest import Action, IngestRefused, IngestService, load_handover
from archive.pixels import load_masking_policy
from archive.pixels.face import deface, pixel_spacing, series_face, slice_position

KEY_FILE_NAME = "pseudonym.key"


def pseudonym_key(config: ArchiveConfig) -> bytes:
    """The 32-byte pseudonym key: from the keyring (as ingest uses it). Only if the vault
    room is absent, from HOME/keys/pseudonym.key (created 0600). Swap here if needed."""
    try:
        from archive.vault import open_keyring_for_cli  # noqa: PLC0415 - optional room
    except ImportError:
        return _key_file(config.home.keys_dir / KEY_FILE_NAME)
    return open_keyring_for_cli(config).pseudonym_key


def _key_file(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
    key = path.read_bytes()
    if len(key) != 32:
        raise ArchiveError(f"{path} must hold exactly 32 bytes; restore it from backup.")
    return key


def _sources(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    if src.is_dir():
        return sorted(p for p in src.rglob("*") if p.is_file())
    fail(f"{src} is neither a file nor a folder; give a DICOM file or a folder of them.")


def deid_command(
    src: Annotated[Path, typer.Argument(help="A DICOM file or a folder of them.")],
    dest: Annotated[Path, typer.Argument(help="Folder for the released (de-identified) files.")],
    home: HomeOption,
    as_json: JsonOption = False,
    deface_faces: Annotated[
        bool,
        typer.Option(
            "--deface",
            help="Deface released series that cover the patient's face (quickshear-style) "
            "before writing them: the copy for a publication.",
        ),
    ] = False,
) -> None:
    """Preview ingest offline: exactly ingest's pipeline (header, free text, pixels and
    face); each file is released, masked (which boxes) or held (why). Released and
    masked files go to DEST."""
    config = load(home)
    try:
        policy = load_policy(config.policies_dir)
        secrets = DeidSecrets(pseudonym_key(config))
        masking = load_masking_policy(config.policies_dir)
        handover = load_handover(config.policies_dir, policy)
    except ArchiveError as exc:
        fail(str(exc))
    files = _sources(src)
    if dest.resolve() == src.resolve() or src.resolve() in dest.resolve().parents:
        fail("DEST must not be inside SRC; choose another folder.")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    preview = _Preview(masking)
    service = IngestService(
        policy,
        secrets,
        preview.hold,
        lambda event: 0,  # the preview is audited once, below, with counts only
        masking=masking,
        handover=handover,
        record_face=preview.face,
        record_report=preview.report,
    )
    released, masked, quarantined, refused = [], [], [], []
    outputs: dict[str, Path] = {}
    for path in files:
        rel = str(path.relative_to(src)) if src.is_dir() else path.name
        preview.current = None
        try:
            outcome = service.process(path.read_bytes(), "cli", "cli")
        except IngestRefused as exc:
            refused.append({"file": rel, "outcome": "refused", "reason": str(exc)})
            continue
        if outcome.action is not Action.STORE or outcome.data is None:
            quarantined.append({"file": rel, "outcome": "held", "reason": outcome.reason})
            continue
        report = preview.current or {}
        header = dcmread(BytesIO(outcome.data), stop_before_pixels=True)
        sop = str(header.SOPInstanceUID)
        out = dest / f"{sop}.dcm"
        out.write_bytes(outcome.data)
        outputs[sop] = out
        entry = {
            "file": rel,
            "outcome": "masked" if outcome.masked else "released",
            "output": out.name,
            "patient": str(header.get("PatientID", "")),
            "study_uid": outcome.study_uid,
            "series_uid": str(header.get("SeriesInstanceUID", "")),
            "modality": str(header.get("Modality", "")),
            "pixels": report.get("reasons", []),
        }
        if outcome.masked:
            entry["boxes"] = (report.get("ocr") or {}).get("masked_regions", [])
            entry["template"] = report.get("template")
            masked.append(entry)
        else:
            released.append(entry)
    faces = preview.faces()
    defaced: list[str] = []
    if deface_faces:
        for series_uid, face in faces.items():
            if face["covered"]:
                members = [
                    outputs[e["output"][:-4]]
                    for e in released + masked
                    if e["series_uid"] == series_uid
                ]
                deface_files(members)
                defaced.append(series_uid)
    for entry in released + masked:
        face = faces.get(entry["series_uid"])
        if face and face["covered"]:
            entry["face"] = "defaced" if entry["series_uid"] in defaced else face["reason"]
    summary = {
        "policy_version": policy.version,
        "pixel_policy": masking.label,
        "level": policy.level,
        "released": released,
        "masked": masked,
        "quarantined": quarantined,
        "refused": refused,
        "faces": faces,
        "defaced_series": defaced,
        "counts": {
            "released": len(released),
            "masked": len(masked),
            "quarantined": len(quarantined),
            "refused": len(refused),
        },
    }
    # Counts only: source file names may carry patient names and never go in the log.
    try:
        audit_log_for(config.home).append(
            AuditEvent(
                "deid.preview",
                "success",
                actor(),
                source="cli",
                detail={"policy": policy.version, **summary["counts"], "defaced": len(defaced)},
            )
        )
    except ArchiveError as exc:
        fail(f"de-identified, but the audit log refused the record: {exc}")
    if as_json:
        emit_json(summary)
        return
    typer.echo(
        f"{len(released)} released and {len(masked)} masked to {dest}, {len(quarantined)} "
        f"held, {len(refused)} refused (policy {policy.version}; {masking.label})."
    )
    for item in masked:
        boxes = ", ".join(
            f"{b['x']},{b['y']} {b['width']}x{b['height']}" for b in item.get("boxes", [])
        )
        typer.echo(f"masked       {item['file']}: {item.get('template')} ({boxes})")
    for item in quarantined:
        typer.echo(f"held         {item['file']}: {item['reason']}")
    for item in refused:
        typer.echo(f"refused      {item['file']}: {item['reason']}")
    for series_uid, face in faces.items():
        if face["covered"]:
            done = "defaced" if series_uid in defaced else "not defaced (use --deface)"
            typer.echo(f"face         series {series_uid}: {face['reason']}; {done}")


class _Preview:
    """The ingest service's callbacks, kept in memory for one preview run."""

    def __init__(self, masking) -> None:
        self.masking = masking
        self.current: dict | None = None
        self.slices: dict[str, list] = {}

    def hold(self, data: bytes, reason: str, **meta) -> str:
        return "preview"  # nothing is kept: a preview holds by not writing

    def report(self, study, series, sop, modality, outcome, ingested_by) -> None:
        ocr = outcome.get("ocr") or {}
        self.current = {**outcome, "ocr": ocr}

    def face(self, study, series, sop, slice_face) -> None:
        self.slices.setdefault(series, []).append(slice_face)

    def faces(self) -> dict[str, dict]:
        return {
            series: series_face(items, self.masking.facial).as_dict()
            for series, items in self.slices.items()
        }


def deface_files(paths: list[Path]) -> None:
    """Deface one series in place (the files the preview just wrote)."""
    import numpy as np

    datasets = sorted((dcmread(p) for p in paths), key=lambda d: slice_position(d) or 0.0)
    if not datasets:
        return
    first = datasets[0]
    positions = [slice_position(d) or 0.0 for d in datasets]
    gaps = [b - a for a, b in zip(positions, positions[1:], strict=False) if b - a > 1e-3]
    z_mm = float(np.median(gaps)) if gaps else float(first.get("SliceThickness") or 1.0)
    row_mm, col_mm = pixel_spacing(first)
    volume = np.stack([d.pixel_array for d in datasets]).astype(np.float32)
    if str(first.get("Modality", "")).upper() == "CT":
        slope = float(first.get("RescaleSlope", 1) or 1)
        intercept = float(first.get("RescaleIntercept", 0) or 0)
        threshold = (-300.0 - intercept) / slope
        fill = max(float(volume.min()), (-1000.0 - intercept) / slope)
    else:
        threshold = 0.15 * float(np.percentile(volume, 99))
        fill = float(volume.min())
    defaced, _ = deface(volume, (z_mm, row_mm, col_mm), threshold, fill)
    for path, ds, plane in zip(paths_for(datasets, paths), datasets, defaced, strict=True):
        ds.PixelData = plane.astype(ds.pixel_array.dtype).tobytes()
        method = ds.get("DeidentificationMethod")
        values = [] if method is None else [method] if isinstance(method, str) else list(method)
        ds.DeidentificationMethod = [*values, "facial surface removed (quickshear-style)"]
        ds.save_as(path, enforce_file_format=True)


def paths_for(datasets, paths: list[Path]) -> list[Path]:
    by_sop = {p.name[:-4]: p for p in paths}
    return [by_sop[str(d.SOPInstanceUID)] for d in datasets]


def register(app: typer.Typer) -> None:
    app.command("deid")(deid_command)
