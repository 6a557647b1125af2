-- Runs once, when the PostgreSQL volume is first created (POSTGRES_DB=driftloop exists already).
-- MLflow gets a database of its own: it has a `datasets` table, and so does driftloop.
CREATE DATABASE mlflow OWNER driftloop;
