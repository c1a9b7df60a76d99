"""From a results table to science: scaling-law fits, emergence, figures, tables, the report.

Pure functions over pandas tables; the JAX used here is the batched optimiser of the fits
(analysis.lbfgs), never the training code. Modules, one idea each:
- fits: every scaling-law fit behind one registry and pipeline (approaches 1-3, Kaplan's
  laws, 1-D power laws, Gadre et al.'s over-training and downstream-error laws, Muennighoff et
  al.'s data-constrained law; lbfgs: the batched L-BFGS of approach 3); extrapolation: backtests
- scores: the tidy score schema and importers; emergence: classification; forecast (its
  batched fits: forecast_fit; its parametric bootstrap: forecast_boot)
- plots, fit_plots, law_plots, tables, emergence_report, report: what gets published
- inputs: checks on input tables (ConfigError naming the field and the fix)
"""
