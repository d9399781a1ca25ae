"""Serving and operations: the cache table, the serving commands' guards, the schedule admin."""
