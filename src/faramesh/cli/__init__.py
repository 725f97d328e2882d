"""The `faramesh` command line."""
