"""Demo data: a synthetic card-transaction feed with late fraud labels, drift and bad data."""

from .generator import DemoOptions, DemoSummary, generate

__all__ = ["DemoOptions", "DemoSummary", "generate"]
