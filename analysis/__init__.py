"""From a results table to science: scaling-law fits, emergence, figures, tables, the report.

Pure functions over pandas tables; the JAX used here is the batched optimiser of the fits
(analysis.lbfgs), never the training code. Modules, one idea each:
- chinchilla: approach 3, L(N, D) = E + A/N^alpha + B/D^beta (lbfgs: the batched L-BFGS)
- isoflop, envelope: approaches 2 and 1; kaplan: Kaplan et al. 2020's laws;
  powerlaw: 1-D saturating power laws and the compute frontier; extrapolation: backtests
- scores: the tidy score schema and importers; emergence: classification; forecast
- plots, fit_plots, tables, emergence_report, report: what gets published
- inputs: checks on input tables (ConfigError naming the field and the fix)
"""
