"""The package version; the compiled framer embeds the same string."""

__version__ = "0.1.0"
