"""The plans of the statements a path runs, for tests that it finds its rows through an index
instead of reading a whole table that grows for as long as the gateway runs."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event


@contextmanager
def statements_on(engine: Engine, table: str) -> Iterator[list[tuple[str, Any]]]:
    """The statements run on `engine` inside the block that read or delete rows of `table`
    (`FROM table`), each with its parameters, in the order they ran."""
    seen: list[tuple[str, Any]] = []
    named = re.compile(rf"\bFROM {table}\b")

    def record(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if named.search(statement):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def plan_of(engine: Engine, statement: str, parameters: Any, *, off: Sequence[str] = ()) -> str:
    """The plan of `statement` with `parameters`, as text: PostgreSQL's EXPLAIN with the planner
    methods `off` turned off (`seqscan`, `sort`, ...), or SQLite's EXPLAIN QUERY PLAN."""
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return "\n".join(str(row[-1]) for row in rows)
        for method in off:
            connection.exec_driver_sql(f"SET LOCAL enable_{method} = off")
        return "\n".join(connection.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars())


def whole_table_read(plan: str, table: str) -> bool:
    """Whether `plan` reads every row of `table` (a sequential scan; SQLite's SCAN)."""
    return bool(re.search(rf"Seq Scan on {table}\b|\bSCAN {table}\b", plan))
