"""The use-case rooms as the adapters inside Orthanc build them (issue 21): the ports
(this thread's database connection, the archive's audit log, the policies) and what
each room needs beside them. The REST routes and the web interface share these, so a
request reaches the same use case whichever way it comes.
"""

from __future__ import annotations

from typing import Any

from archive.catalogue import Catalogue, load_vocabulary, repository_for
from archive.catalogue import usecases as uc
from archive.core import Ports

_vocabularies: dict[str, Any] = {}
_repositories: dict[int, tuple[Any, Any]] = {}


def catalogue_room(services, source: str = "rest") -> uc.CatalogueRoom:
    """The catalogue's use cases on this thread's connection, auditing to the archive
    (the repository, whose tables are checked when built, is kept per connection)."""
    conn = services.db()
    kept = _repositories.get(id(conn))
    if kept is None or kept[0] is not conn:
        kept = _repositories[id(conn)] = (conn, repository_for(conn))
    policies = services.config.policies_dir
    vocabulary = _vocabularies.get(str(policies))
    if vocabulary is None:
        vocabulary = _vocabularies.setdefault(str(policies), load_vocabulary(policies))
    ports = Ports(db=conn, audit=services.runtime.audit, policies_dir=policies, source=source)
    prefix = services.config.school_prefix
    catalogue = Catalogue(conn, prefix, vocabulary=vocabulary, repository=kept[1])
    return uc.CatalogueRoom(ports, prefix, vocabulary, _catalogue=catalogue)
