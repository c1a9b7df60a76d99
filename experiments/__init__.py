"""Sweeps: expansion into runs, executors, run store, results table, CLI."""
