"""Exception types the command line turns into one-line messages and exit codes."""

from __future__ import annotations


class SynesthesiaError(Exception):
    """Base class: an error the operator should read as one line, without a traceback."""

    exit_code = 1


class ConfigError(SynesthesiaError):
    """A configuration file or flag is invalid; the message names the key's path."""

    exit_code = 2


class BundleError(SynesthesiaError):
    """A model bundle is missing, damaged or of an unknown format; the message names the file or key."""

    exit_code = 2


class AudioLoadError(SynesthesiaError):
    """An audio file cannot be read or decoded."""

    exit_code = 2


class MissingDependencyError(SynesthesiaError, ImportError):
    """An optional dependency is not installed; the message names what to install."""

    exit_code = 3
