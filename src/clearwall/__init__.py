"""clearwall: a transparent, jurisdiction-aware DNS policy gateway."""

__version__ = "0.1.0"
