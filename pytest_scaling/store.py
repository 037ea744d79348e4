"""Run cache: results keyed by a hash of each run's complete config, kept in SQLite.

A repeated sweep trains nothing and an interrupted one resumes. Records are JSON text (nothing
executes on load); the database runs in WAL mode with a busy timeout and writes in transactions,
so pytest-xdist workers can share one cache and a killed writer leaves only whole commits behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
APPLICATION_ID = "pytest-scaling run cache"
DEFAULT_CACHE_DIR = ".scaling"
CACHE_FILE = "cache.sqlite"
BUSY_TIMEOUT_S = 30.0
_QUERY_CHUNK = 500  # keys per SELECT, well under SQLite's bound-variable limit

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, record TEXT NOT NULL,"
    " created_at REAL NOT NULL, schema_version INTEGER NOT NULL)",
)

# Connections inherited through fork(): SQLite forbids using (or closing) them in the child, so
# they stay referenced here rather than being closed by the garbage collector there.
_INHERITED: list[sqlite3.Connection] = []


def run_key(*, family_fingerprint: str, width: int, lr: float, seed: int, config: dict,
            device_kind: str) -> str:
    """sha256 hex of a canonical JSON of every input plus SCHEMA_VERSION.

    Keys are sorted and floats are written by ``repr`` (json's own float encoding), so dict
    order and spellings of one number (``1e-3``, ``0.001``) do not change the key.
    """
    payload = {"schema_version": SCHEMA_VERSION, "family_fingerprint": family_fingerprint,
               "width": int(width), "lr": float(lr), "seed": int(seed), "config": config,
               "device_kind": device_kind}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


class CacheError(Exception):
    """The cache file cannot be used; the one-line message names the file and the way out."""

    @classmethod
    def about(cls, path: str | os.PathLike, problem: str) -> CacheError:
        """``problem`` (a phrase after the path) flattened to one line, plus the way out."""
        return cls(f"pytest-scaling cache {os.fspath(path)} {' '.join(problem.split())}; "
                   "delete it or run with --scaling-no-cache")


class ResultCache:
    """Key → JSON record store in one SQLite file, safe to share between processes.

    The connection is opened per process (and reopened after fork or unpickling), because an
    SQLite connection must not cross a process boundary.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._connection()  # open now so a bad file is reported at construction

    @classmethod
    def in_dir(cls, directory: str | os.PathLike) -> ResultCache:
        """The cache of a ``--scaling-cache DIR``: ``DIR/cache.sqlite``."""
        return cls(Path(directory) / CACHE_FILE)

    def get_many(self, keys: Sequence[str]) -> dict[str, dict]:
        """Stored records of those ``keys`` that are present; missing keys are absent."""
        keys = list(keys)
        found: dict[str, dict] = {}
        with self._errors():
            conn = self._connection()
            for start in range(0, len(keys), _QUERY_CHUNK):
                chunk = keys[start:start + _QUERY_CHUNK]
                rows = conn.execute(f"SELECT key, record FROM runs WHERE key IN "
                                    f"({','.join('?' * len(chunk))})", chunk)
                found.update((key, json.loads(record)) for key, record in rows)
        return found

    def put_many(self, items: Mapping[str, dict]) -> None:
        """Store (or replace) all ``items`` in one transaction: all of them land or none."""
        now = time.time()
        # Serialised before the transaction so a non-JSON value fails without holding the lock.
        rows = [(key, json.dumps(record), now, SCHEMA_VERSION) for key, record in items.items()]
        if not rows:
            return
        with self._errors():
            with self._write(self._connection()) as conn:
                conn.executemany("INSERT OR REPLACE INTO runs (key, record, created_at,"
                                 " schema_version) VALUES (?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        with self._errors():
            return self._connection().execute("SELECT count(*) FROM runs").fetchone()[0]

    def close(self) -> None:
        """Close this process's connection (a later call reopens it); a forked copy's is only dropped."""
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        elif self._conn is not None:
            _INHERITED.append(self._conn)
        self._conn = None

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._conn, self._pid = None, -1

    def __repr__(self) -> str:
        return f"ResultCache({os.fspath(self.path)!r})"

    # -- internals -------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """This process's connection, opened (and the file checked) on first use."""
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self.close()
        with self._errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                self._prepare_when_unlocked(conn)
            except BaseException:
                conn.close()
                raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _prepare_when_unlocked(self, conn: sqlite3.Connection) -> None:
        """``_prepare``, retried while another process holds the lock it needs.

        Switching a new file to WAL takes an exclusive lock that SQLite does not wait for
        through the busy handler, so processes creating one cache at once retry here.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return self._prepare(conn)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Create the tables in an empty database; refuse any other file without modifying it."""
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            conn.execute("PRAGMA journal_mode=WAL")
            with self._write(conn):
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.executemany("INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)",
                                 [("application_id", APPLICATION_ID),
                                  ("schema_version", str(SCHEMA_VERSION))])
        elif not {"meta", "runs"} <= tables:
            raise CacheError.about(self.path, "is an SQLite database of something else "
                                   f"(tables: {', '.join(sorted(tables))})")
        try:
            meta = dict(conn.execute("SELECT name, value FROM meta"))
        except sqlite3.OperationalError:  # a foreign `meta` table with other columns
            meta = {}
        if meta.get("application_id") != APPLICATION_ID:
            raise CacheError.about(self.path, "is an SQLite database of something else "
                                   "(no pytest-scaling application id)")
        version = meta.get("schema_version", "(none)")
        if version != str(SCHEMA_VERSION):
            raise CacheError.about(self.path, f"has schema version {version}, "
                                   f"this pytest-scaling uses version {SCHEMA_VERSION}")
        conn.execute("PRAGMA journal_mode=WAL")
        # In WAL mode, NORMAL keeps the database consistent through crashes (only the last
        # commits can be lost on power failure, which a cache tolerates) and spares an fsync per commit.
        conn.execute("PRAGMA synchronous=NORMAL")

    @staticmethod
    @contextmanager
    def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """A write transaction, taking the write lock up front so waits use the busy timeout."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn SQLite and file-system failures into a one-line CacheError."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise CacheError.about(self.path, f"cannot be used ({exc})") from None
