"""Training-set schema and builders (real APOGEE x XP, real surveys, simulated sky)."""
