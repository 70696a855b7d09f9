"""The storage adapter: every query coi makes, and nothing above it builds one.

``url`` (the database URL, parsed once), ``engine`` (SQLite and PostgreSQL engines),
``database`` (what the service holds: URL, engine, repositories, schema), ``repo`` and
``chain_repo`` (repository functions over the ledger's and the chain's tables), ``tx`` (the
opaque handle of a transaction in progress), ``reads`` (the verify workers' driver-only
reads), ``models`` and ``migrate`` (tables and Alembic). This package's ``__init__`` imports
nothing: a verify worker loads ``reads`` without SQLAlchemy.
"""
