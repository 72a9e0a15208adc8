"""Database schema, engines and migrations (PostgreSQL and SQLite)."""
