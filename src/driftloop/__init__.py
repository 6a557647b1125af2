"""driftloop."""
