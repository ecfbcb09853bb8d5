"""The database: pool, migrations, capability detection and shared queries."""
