"""The values a PostgreSQL error's first line quotes are left out of the log; its names stay."""

from __future__ import annotations

import pytest

from gateway.platform.logs import without_quoted_values


@pytest.mark.parametrize(
    ("line", "logged"),
    [
        (
            '(psycopg.errors.InvalidTextRepresentation) invalid input syntax for type uuid: "ada"',
            '(psycopg.errors.InvalidTextRepresentation) invalid input syntax for type uuid: "…"',
        ),
        (  # quotes inside the value that ends the line
            'psycopg.errors.DataError: invalid input syntax for type date: "a"b@c.d"',
            'psycopg.errors.DataError: invalid input syntax for type date: "…"',
        ),
        (
            'psycopg.errors.DataError: value "123456789" is out of range for type smallint',
            'psycopg.errors.DataError: value "…" is out of range for type smallint',
        ),
        (
            'DataError: (psycopg.errors.DataError) time zone "Ada/Home" not recognized; retry',
            'DataError: (psycopg.errors.DataError) time zone "…" not recognized; retry',
        ),
    ],
)
def test_a_database_errors_first_line_loses_the_values_it_quotes(line, logged):
    assert without_quoted_values(line) == logged


@pytest.mark.parametrize(
    "text",
    [
        '(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "m_pk"',
        'psycopg.errors.NotNullViolation: null value in column "shard" of relation "outcomes"',
        '(psycopg.OperationalError) connection to server at "10.0.0.5", port 5432 failed',
        'psycopg.errors.SyntaxError: syntax error at or near "SELEC"',
        # not a database error's first line
        'File "gateway/x.py", line 3\nValueError: "kept"\n[SQL: SELECT "a" FROM t]',
    ],
)
def test_the_names_a_database_error_quotes_and_other_lines_are_kept(text):
    assert without_quoted_values(text) == text
