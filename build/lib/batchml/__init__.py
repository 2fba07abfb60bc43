"""batchml: a batch ML pipeline on Apache Spark."""

__version__ = "0.1.0"
