"""Analysis of a sweep: power-law fits, emergence classification, figures and report.

Pure functions over the sweep's pandas tables (results, curves); no training code.
"""

from analysis.emergence import classify_curve, classify_tasks, run_labels
from analysis.plots import plot_emergence, plot_loss_vs_flops
from analysis.powerlaw import (
    FitError,
    FitSkipped,
    PowerLawFit,
    compute_frontier,
    final_runs,
    fit_loss_vs_flops,
    fit_loss_vs_params,
    fit_power_law,
)
from analysis.report import emergence_markdown, load_sweep_tables, write_report

__all__ = [
    "FitError",
    "FitSkipped",
    "PowerLawFit",
    "classify_curve",
    "classify_tasks",
    "compute_frontier",
    "emergence_markdown",
    "final_runs",
    "fit_loss_vs_flops",
    "fit_loss_vs_params",
    "fit_power_law",
    "load_sweep_tables",
    "plot_emergence",
    "plot_loss_vs_flops",
    "run_labels",
    "write_report",
]
