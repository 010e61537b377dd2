"""Secure teaching archive for a school of radiology: the domain, with no `import orthanc`."""

__version__ = "0.1.0"
