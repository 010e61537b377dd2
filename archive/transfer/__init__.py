"""Archive-to-archive transfer (issue 25): package, import, receipt. See FORMAT.md."""

from archive.transfer.keys import TransferKeys, transfer_keys
from archive.transfer.package import (
    OpenedPackage,
    PackageRefused,
    Peer,
    TransferError,
    open_package,
    write_package,
)
from archive.transfer.receipt import VerifiedReceipt, sign_receipt, verify_receipt

__all__ = [
    "OpenedPackage",
    "PackageRefused",
    "Peer",
    "TransferError",
    "TransferKeys",
    "VerifiedReceipt",
    "open_package",
    "sign_receipt",
    "transfer_keys",
    "verify_receipt",
    "write_package",
]
