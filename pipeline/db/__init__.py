"""Storage: the ORM schema, engines and sessions, migrations and queries."""
