"""`archive package verify|open`: for the person who received an export package.

Needs no archive home: a recipient runs it on their own machine with the key they were
given (an age identity file, or the passphrase). It decrypts in memory, checks the
manifest's signature (against --signing-key, or prints the signer's fingerprint to
compare with the one the school gave), the text files' and every DICOM file's SHA-256,
and only then (`open`) writes the files out. Debian's `age` opens the same file:
`age -d -i key.txt -o package.tar PACKAGE` then `tar xf package.tar`.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated

import pyrage
import typer

from archive.cli.common import JsonOption, emit_json, fail, stdin_is_tty
from archive.export import (
    PackageError,
    check_signature,
    contents_of,
    unpack,
    verify_package,
)

AGE_MAGIC = b"age-encryption.org/v1"
PackageArg = Annotated[Path, typer.Argument(help="The package (.tar.age, or a decrypted .tar).")]
IdentityOption = Annotated[
    Path | None, typer.Option("--identity", "-i", help="Your age identity file (age-keygen).")
]
PassphraseOption = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="The package's passphrase, first line (else asked)."),
]
SigningKeyOption = Annotated[
    str | None,
    typer.Option("--signing-key", help="The school's signing key (64 hex) to require."),
]


def _plain(package: Path, identity: Path | None, passphrase_file: Path | None) -> bytes:
    try:
        blob = package.read_bytes()
    except OSError as exc:
        fail(f"cannot read {package} ({exc.strerror}).")
    if not blob.startswith(AGE_MAGIC):
        return blob  # already decrypted with `age -d`
    try:
        if identity is not None:
            keys = [
                pyrage.x25519.Identity.from_str(line.strip())
                for line in identity.read_text().splitlines()
                if line.strip().startswith("AGE-SECRET-KEY-")
            ]
            if not keys:
                fail(f"{identity} holds no age identity (AGE-SECRET-KEY-...).")
            return pyrage.decrypt(blob, keys)
        if passphrase_file is not None:
            secret = passphrase_file.read_text().splitlines()[0]
        elif stdin_is_tty():
            secret = getpass.getpass("package passphrase: ")
        else:
            fail("give --identity FILE or --passphrase-file FILE (or run on a terminal).")
        return pyrage.passphrase.decrypt(blob, secret)
    except (OSError, IndexError):
        fail("cannot read the key file; give the identity or passphrase file you were sent.")
    except Exception:  # noqa: BLE001 - pyrage's own error types
        fail("the package cannot be decrypted with this key or passphrase; check which one "
             "the school sent you.")  # fmt: skip


def _check(package: Path, identity, passphrase_file, signing_key) -> tuple[object, dict]:
    try:
        contents = contents_of(unpack(_plain(package, identity, passphrase_file)))
    except (PackageError, OSError, ValueError) as exc:
        fail(f"{package} is not a readable export package ({exc}).")
    problems = check_signature(contents, signing_key) + verify_package(contents)
    manifest = contents.manifest
    signer = manifest.get("signer") or {}
    report = {
        "ok": not problems,
        "problems": problems,
        "signer_fingerprint": signer.get("fingerprint", ""),
        "signing_key_checked": signing_key is not None,
        "approval": (manifest.get("approval") or {}).get("reference", ""),
        "cases": len(manifest.get("cases", [])),
        "instances": sum(len(c.get("instances", [])) for c in manifest.get("cases", [])),
        "teaching_cases": len(manifest.get("teaching") or {}),
        "teaching_withheld": manifest.get("teaching_withheld") or [],
    }
    return contents, report


def _say(report: dict) -> None:
    if report["ok"]:
        typer.echo(
            f"verified: {report['instances']} instance(s) of {report['cases']} case(s), "
            f"approval {report['approval']}, signed by key {report['signer_fingerprint']}"
            + (
                ""
                if report["signing_key_checked"]
                else " (compare this fingerprint with the one the school gave you)"
            )  # fmt: skip
        )
        for w in report["teaching_withheld"]:
            typer.echo(f"  teaching text withheld: {w['field']} of {w['case_id']} "
                       f"({', '.join(w['kinds'])})")  # fmt: skip


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Verify or open an export package you received (no home needed).")
    app.add_typer(sub, name="package")

    @sub.command("verify")
    def verify_cmd(
        package: PackageArg,
        identity: IdentityOption = None,
        passphrase_file: PassphraseOption = None,
        signing_key: SigningKeyOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Check the signature, the terms, the teaching text and every file's hash."""
        _, report = _check(package, identity, passphrase_file, signing_key)
        if as_json:
            emit_json(report)
        else:
            _say(report)
        if not report["ok"]:
            fail("the package does not verify: " + "; ".join(report["problems"])[:500]
                 + ". Do not use it; ask the school for a new copy.")  # fmt: skip

    @sub.command("open")
    def open_cmd(
        package: PackageArg,
        out: Annotated[Path, typer.Option("--out", help="A new directory for the files.")],
        identity: IdentityOption = None,
        passphrase_file: PassphraseOption = None,
        signing_key: SigningKeyOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Verify, then write the files (DICOM, TERMS, APPROVAL, TEACHING) to --out."""
        contents, report = _check(package, identity, passphrase_file, signing_key)
        if not report["ok"]:
            fail("the package does not verify, nothing was written: "
                 + "; ".join(report["problems"])[:500] + ".")  # fmt: skip
        if out.exists():
            fail(f"{out} exists; give a new directory.")
        files = {
            "manifest.json": contents.manifest_bytes,
            "TERMS.txt": contents.terms.encode(),
            "APPROVAL.txt": contents.approval.encode(),
            "TEACHING.txt": contents.teaching.encode(),
            **contents.files,
        }
        root = out.resolve()
        for name, data in files.items():
            target = (root / name).resolve()
            if not target.is_relative_to(root):
                fail(f"the package names a file outside {out}; nothing more was written.")
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        report["written"] = len(files)
        report["out"] = str(out)
        if as_json:
            emit_json(report)
        else:
            _say(report)
            typer.echo(f"{len(files)} file(s) written to {out}; read TERMS.txt first.")
