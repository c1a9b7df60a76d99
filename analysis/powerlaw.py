"""Kept only for analysis/emergence_report.py, which imports json_safe from here (that module
belongs to another line of work); the power-law fits live in analysis/fits/powerlaw.py and
json_safe in analysis/tables.py. Remove once emergence_report imports analysis.tables."""

from analysis.tables import json_safe

__all__ = ["json_safe"]
