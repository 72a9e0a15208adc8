"""The text of the statements the store runs, one module per database.

Each statement has one name in both modules: :mod:`taskrt.store.sql.postgresql` holds the
PostgreSQL text in the form psycopg runs (``%(name)s`` placeholders), executed through
:class:`taskrt.store.executor.PsycopgExecutor` or ``Connection.exec_driver_sql`` inside a
transaction; :mod:`taskrt.store.sql.sqlite` holds SQLite's statements, executed through
SQLAlchemy. Statements the two databases share are SQLAlchemy Core expressions written once in
the module that runs them.
"""
