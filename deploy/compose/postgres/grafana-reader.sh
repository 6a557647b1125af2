#!/usr/bin/env bash
# Runs once, when the PostgreSQL volume is first created: a read-only login for Grafana, which reads the
# deployment events (promotions, rollbacks) as dashboard annotations. driftloop creates its tables later
# (its migrations run on first use), so the grant is a default privilege on the tables the driftloop role
# creates. An existing volume does not run this: see docs/operations.md ("Grafana annotations").
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v password="$GRAFANA_DB_PASSWORD" <<'SQL'
CREATE ROLE grafana_reader LOGIN PASSWORD :'password';
GRANT CONNECT ON DATABASE driftloop TO grafana_reader;
GRANT USAGE ON SCHEMA public TO grafana_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE driftloop IN SCHEMA public GRANT SELECT ON TABLES TO grafana_reader;
SQL
