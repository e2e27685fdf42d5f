"""Storage: schema, migrations, the writer and read queries (SQLite or PostgreSQL)."""
