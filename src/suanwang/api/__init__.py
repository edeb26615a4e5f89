"""The HTTP API (FastAPI) under /api/v1: a thin adapter over suanwang.services."""
