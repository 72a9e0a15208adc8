"""Queue backends: the interface the worker, the service layer and maintenance use, and its
implementations (Redis; SQL on PostgreSQL or SQLite)."""
