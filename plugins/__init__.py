"""Orthanc adapters: the only code in the project that imports `orthanc`."""
