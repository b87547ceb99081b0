"""Vision Lab: see and compare image classifiers."""

__version__ = "0.1.0"
