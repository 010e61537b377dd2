"""One exception type the CLI turns into a single clear line and a non-zero exit."""


class ArchiveError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do next."""


class ConfigError(ArchiveError):
    """The archive home or its configuration is missing or invalid."""
