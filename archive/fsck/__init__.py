"""`archive fsck`: do the catalogue, Orthanc's index, the stored files and the audit log agree?

from archive.fsck import check_home
report = check_home(config, keyring, repair=False)
"""

from archive.fsck.check import Finding, FsckReport, check_home, lost_and_found_dir

__all__ = ["Finding", "FsckReport", "check_home", "lost_and_found_dir"]
