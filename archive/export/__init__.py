"""The encrypted export package: what leaves the suite after a written approval."""

from archive.export.package import (
    PackageContents,
    PackageError,
    build_package,
    open_package,
    verify_package,
)

__all__ = ["PackageContents", "PackageError", "build_package", "open_package", "verify_package"]
