"""One training run: config, model, accounting, data, tasks, training and evaluation."""
