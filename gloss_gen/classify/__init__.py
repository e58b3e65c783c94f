"""classify layer."""
