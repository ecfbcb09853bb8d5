#!/bin/sh
# The service runs as monitor_app, which owns nothing: it cannot alter the schema, and
# cannot UPDATE, DELETE or TRUNCATE the audit trail (the trigger refuses those too).
# Migrations run as monitor_owner (the compose "migrate" service).
set -eu
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" <<SQL
CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE ROLE monitor_app LOGIN PASSWORD '${DB_APP_PASSWORD}';
GRANT CONNECT ON DATABASE monitor TO monitor_app;
GRANT USAGE ON SCHEMA public TO monitor_app;
ALTER DEFAULT PRIVILEGES FOR ROLE monitor_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO monitor_app;
ALTER DEFAULT PRIVILEGES FOR ROLE monitor_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO monitor_app;
SQL
