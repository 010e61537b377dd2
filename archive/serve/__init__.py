"""Serving a home: Orthanc's configuration, the home layout, the TLS proxy and the supervisor."""
