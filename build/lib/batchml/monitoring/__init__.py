"""Drift and realized-performance monitoring of the champion model (``batchml run monitor``)."""
