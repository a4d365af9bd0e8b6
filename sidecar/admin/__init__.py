"""The admin API, on its own listener."""
