"""The ledger's SQLite inserts, made synchronously in the event loop's own thread.

Through aiosqlite each batch ran in a thread of its own, which needs the GIL to bind every
value. With the event loop busy, those handoffs cost that thread about 60 µs of CPU a row
(11 µs with the loop idle) and slowed it to a crawl: batches of 500 rows took over a second,
and some ran past the write timeout. Here a row costs about 24 µs of the loop's own time,
its values' conversion included, and nothing else. A transaction holds at most
`ROWS_PER_TRANSACTION` rows, so the loop is held for about a millisecond at a time; in WAL
mode a commit does not wait for the disk (a checkpoint, now and then, does).

Another worker's write lock is waited for at most `LOCK_WAIT` seconds; after that the batch
is refused like any failed write, and written at the next flush.
"""

from __future__ import annotations

import functools
import sqlite3
from typing import Any

from sqlalchemy.engine import Dialect

from chatservice.accounting.tables import UsageEvent
from chatservice.db.engine import sqlite_pragmas

Row = dict[str, Any]

ROWS_PER_TRANSACTION = 100
LOCK_WAIT = 0.05

_COLUMNS = list(UsageEvent.__table__.columns)


class SQLiteWriter:
    def __init__(self, database: str, dialect: Dialect) -> None:
        self._database = database
        # Each column's conversion, as SQLAlchemy's: the rows read back as the ORM wrote them.
        self._processors = [(c.name, c.type.bind_processor(dialect)) for c in _COLUMNS]
        self._connection: sqlite3.Connection | None = None

    def write(self, rows: list[Row]) -> None:
        """Insert `rows` in one transaction, ignoring ids stored already."""
        connection = self._connect()
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(_insert(len(rows)), self._values(rows))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                # Few prepared statements kept: a 100-row insert is large, and the batch that
                # empties the queue comes in any size.
                self._database,
                timeout=LOCK_WAIT,
                isolation_level=None,
                cached_statements=4,
            )
            sqlite_pragmas(connection)
            self._connection = connection
        return self._connection

    def _values(self, rows: list[Row]) -> tuple[Any, ...]:
        values: list[Any] = []
        for row in rows:
            values += (row[name] if p is None else p(row[name]) for name, p in self._processors)
        return tuple(values)


@functools.cache
def _insert(rows: int) -> str:
    one = "(" + ", ".join("?" * len(_COLUMNS)) + ")"
    names = ", ".join(column.name for column in _COLUMNS)
    # Names from the table's definition; every value is a parameter.
    sql = f"INSERT INTO {UsageEvent.__tablename__} ({names}) VALUES "  # noqa: S608
    return sql + ", ".join([one] * rows) + " ON CONFLICT (id) DO NOTHING"
