"""Table storage: Delta tables on local disk or S3, read and written from Spark or Arrow."""

from batchml.storage.commit import PartiallyCommitted, SchemaMismatch, WriteResult
from batchml.storage.conflicts import WriteConflict
from batchml.storage.files import ReplaceWhereViolation
from batchml.storage.lake import Lake, UnknownTable

__all__ = ["Lake", "PartiallyCommitted", "SchemaMismatch", "ReplaceWhereViolation", "UnknownTable", "WriteConflict",
           "WriteResult"]
