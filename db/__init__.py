"""Persistence: SQLAlchemy models, repositories, migrations, history store, cache and bus."""
