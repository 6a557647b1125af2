"""The three stores every stage talks through: tracking (MLflow), metadata (SQL), prediction log (Parquet)."""
