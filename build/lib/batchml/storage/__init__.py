"""Table storage: Delta tables on local disk or S3, read and written from Spark or Arrow."""

from batchml.storage.commit import SchemaMismatch, WriteResult
from batchml.storage.files import ReplaceWhereViolation
from batchml.storage.lake import Lake, UnknownTable

__all__ = ["Lake", "SchemaMismatch", "ReplaceWhereViolation", "UnknownTable", "WriteResult"]
