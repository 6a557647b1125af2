"""Drift, data quality and performance monitoring."""
