"""The package version, in one place (read by the package and by seed-library provenance)."""

__version__ = "0.1.0"
