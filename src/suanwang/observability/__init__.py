"""Logs, metrics and request ids: what an operator reads to run the platform."""
