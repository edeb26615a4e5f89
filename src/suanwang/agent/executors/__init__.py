"""Executors: one adapter per site engine behind the ``Executor`` protocol."""
