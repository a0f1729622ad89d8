"""The package version, in a module of its own: the modules that record it (output markers,
prepared data's meta.json, the service's /health) import it from here, not from the package,
whose ``__init__`` sits above everything it re-exports."""

__version__ = "0.1.0"
