"""The Wine Quality data (red and white) that `driftloop demo` uses; see README.md for attribution."""
