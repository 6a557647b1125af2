"""Reading, validating and versioning tabular data."""
