"""The one schema every store runs: numbered migrations in SQL that SQLite and PostgreSQL share."""

from __future__ import annotations

# Each migration is a tuple of statements, applied in one transaction and recorded in
# schema_version; a new one is appended, never edited, since databases out there ran the old.
# Portable SQL only: DOUBLE PRECISION (REAL is 4 bytes in PostgreSQL, too coarse for epoch
# seconds; SQLite gives it REAL affinity), BIGINT, TEXT, IF NOT EXISTS. Migration 1 is the schema
# from before migrations existed: on such a database its IF NOT EXISTS leaves the tables alone.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS sessions (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            category TEXT NOT NULL,
            seed BIGINT NOT NULL,
            questions_total INTEGER NOT NULL,
            share_id TEXT UNIQUE,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS sessions_owner ON sessions (owner, created_at)",
        "CREATE INDEX IF NOT EXISTS sessions_updated ON sessions (updated_at)",
        """CREATE TABLE IF NOT EXISTS steps (
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            n INTEGER NOT NULL,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 0,
            text TEXT NOT NULL DEFAULT '',
            source TEXT,
            model TEXT,
            note TEXT,
            reason TEXT,
            opened_at DOUBLE PRECISION NOT NULL,
            first_chunk_s DOUBLE PRECISION,
            duration_s DOUBLE PRECISION,
            chunks INTEGER,
            attempts INTEGER,
            PRIMARY KEY (session_id, n)
        )""",
        """CREATE TABLE IF NOT EXISTS answers (
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            n INTEGER NOT NULL,
            text TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (session_id, n)
        )""",
    ),
    # 2: "this report doesn't fit me", at most once per journey, gone with the journey.
    (
        """CREATE TABLE IF NOT EXISTS report_feedback (
            session_id TEXT PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
            created_at DOUBLE PRECISION NOT NULL
        )""",
    ),
)

VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
CURRENT_VERSION = "SELECT COALESCE(MAX(version), 0) AS version FROM schema_version"
LATEST = len(MIGRATIONS)


def pending(current: int) -> list[tuple[int, tuple[str, ...]]]:
    """The migrations a database at `current` still needs, numbered from 1, in order."""
    return [(number, MIGRATIONS[number - 1]) for number in range(current + 1, LATEST + 1)]
