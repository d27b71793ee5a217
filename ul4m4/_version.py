"""The library version (one home: the package, model files and the CLI read it)."""

__all__ = ["__version__"]

__version__ = "0.2.0"
