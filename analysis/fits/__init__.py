"""Scaling-law fits behind one interface (base.Fit) and one pipeline: registry (forms by name),
columns and selection (which columns and rows), pipeline (fit every group), outputs (fit.json,
fit.md, fit.tex, plots); bootstrap and ols are shared by every fit form."""
