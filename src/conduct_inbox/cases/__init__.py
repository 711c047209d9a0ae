"""Domain services that run inside the caller's transaction."""
