"""Crash-safe JSON storage under DATA_DIR and the repositories built on it."""
