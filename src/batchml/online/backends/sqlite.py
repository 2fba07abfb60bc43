"""The embedded default: one SQLite file (standard library, no server, no new dependency).

Why SQLite over LMDB or RocksDB: it ships with Python (no new dependency to pin or build; LMDB would
add the ``lmdb`` package and a map size fixed up front, RocksDB a third-party binding such as
``rocksdict``), the store is one file any tool opens, and WAL mode lets the server read while
``materialize`` writes: readers see the last committed batch and never block the writer. A lookup is
a primary-key B-tree probe. LMDB reads would be faster still, but a lookup's cost is dominated by
decoding and HTTP, not by the probe (bench/bench_online.py).
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from batchml.online.backends import BackendUnavailable, Record

log = logging.getLogger(__name__)
CHUNK = 500  # keys per statement, below SQLite's bound-parameter limit on every build
# A rowid table: the key's index holds keys only. The first layout (WITHOUT ROWID) kept each value in the key's
# B-tree, so a search that met a state of a megabyte (a merchant's, at 1M events a day) read its whole overflow
# chain to compare keys: small inserts after 600 values of 1 MB took 73 s against 0.6 s.
SCHEMA = """
CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS records_expiry ON records (expires_at);
"""
TO_ROWID = """
BEGIN IMMEDIATE;
CREATE TABLE records_rowid (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at INTEGER NOT NULL);
INSERT INTO records_rowid SELECT key, value, expires_at FROM records ORDER BY key;
DROP TABLE records;
ALTER TABLE records_rowid RENAME TO records;
COMMIT;
"""


class SqliteBackend:
    name = "sqlite"

    def __init__(self, path: str, create: bool = False):
        self.path = Path(path)
        if not self.path.is_file():
            if not create:
                raise BackendUnavailable(f"online store {self.path} does not exist: run `batchml run materialize "
                                         "--run-date D` first (or point online.sqlite.path at it)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()  # one connection per thread: sqlite3 objects are not shared
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with self._connection() as db:
            if create and _without_rowid(db):  # a store of the first layout: the writer moves it, once
                log.info("online store %s: moving its records to a rowid table (once)", self.path)
                db.executescript(TO_ROWID)
            db.executescript(SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def put(self, records: Sequence[Record]) -> None:
        self._write("INSERT OR REPLACE INTO records (key, value, expires_at) VALUES (?, ?, ?)",
                    [(r.key, r.value, r.expires_at) for r in records])

    def _write(self, sql: str, rows: list[tuple]) -> None:
        """One transaction: all rows or none."""
        db, done = self._connection(), False
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(sql, rows)
            done = True
        finally:
            db.execute("COMMIT" if done else "ROLLBACK")

    @contextmanager
    def sole_writer(self) -> Iterator[None]:
        """Hold the store's writer turn (a lock file beside it, which the kernel releases if the holder dies) for
        a run of writes. SQLite has one writer, and its busy handler polls: writers that race per transaction
        can starve one past its busy timeout (it failed materialize at 1M events a day). A waiter for the turn
        blocks in the kernel and is woken when the holder lets go."""
        with open(self.path.with_name(self.path.name + ".writer"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def get(self, keys: Sequence[str]) -> dict[str, bytes]:
        db, out = self._connection(), {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), CHUNK):
            part = unique[i:i + CHUNK]
            sql = f"SELECT key, value FROM records WHERE key IN ({','.join('?' * len(part))})"
            try:
                out.update(db.execute(sql, part).fetchall())
            except sqlite3.OperationalError as exc:  # locked past the timeout, unreadable file
                raise BackendUnavailable(f"online store {self.path}: {exc}") from None
        return out

    def delete(self, keys: Sequence[str]) -> None:
        self._write("DELETE FROM records WHERE key = ?", [(k,) for k in keys])

    def purge(self, before: int) -> int:
        return self._connection().execute("DELETE FROM records WHERE expires_at <= ?", (before,)).rowcount

    def ping(self) -> None:
        try:
            self._connection().execute("SELECT 1 FROM records LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"online store {self.path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()


def _without_rowid(db: sqlite3.Connection) -> bool:
    row = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'records'").fetchone()
    return row is not None and "WITHOUT ROWID" in row[0].upper()
