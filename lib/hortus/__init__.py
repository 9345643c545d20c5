"""Hortus: a notebook-first, data-centric ML platform."""

__version__ = "0.1.0"
