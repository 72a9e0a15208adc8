"""Alembic environment: runs migrations on the engine handed over by :mod:`taskrt.db.migrate`."""

from __future__ import annotations

from alembic import context

from taskrt.db.models import include_object, metadata

config = context.config


def run_migrations_online() -> None:
    engine = config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_object=include_object(connection.dialect.name),
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("taskrt migrations run online only: use `taskrt db upgrade`")
run_migrations_online()
