"""Session storage: SQLite through SQLAlchemy 2.x, WAL, Alembic migrations, one writer."""
