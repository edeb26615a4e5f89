"""`python -m suanwang` runs the CLI."""

from suanwang.cli.main import app

app()
