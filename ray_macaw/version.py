"""The package version, apart from `ray_macaw/__init__.py` so that modules can name it without
importing the package's public API (and everything that pulls in)."""

__version__ = "0.1.0"
