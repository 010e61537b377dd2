"""The encrypted export package: what leaves the suite after a written approval."""

from archive.export.package import (
    PackageContents,
    PackageError,
    build_package,
    check_signature,
    contents_of,
    open_package,
    screen_teaching,
    unpack,
    verify_package,
)

__all__ = [
    "PackageContents",
    "PackageError",
    "build_package",
    "check_signature",
    "contents_of",
    "open_package",
    "screen_teaching",
    "unpack",
    "verify_package",
]
