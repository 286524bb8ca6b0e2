"""The output catalogue: schema, units, flags and queries."""
