"""DICOM networking done by the archive itself (pynetdicom), outside Orthanc's REST API."""
