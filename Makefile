# The two set-up commands of the README: `make demo` and `make test`.
# Both create (or reuse) the virtual environment .venv and install the project into it.
# The demo needs only the core packages (about a minute to install); the tests add the cluster
# executors, W&B, lm-evaluation-harness (with the start-up line that lets `lm_eval --model
# scaling` find our model), pytest and ruff.
VENV ?= .venv
PY := $(VENV)/bin/python
CORE := $(VENV)/.installed-core
INSTALLED := $(VENV)/.installed-test
BENCH := $(VENV)/.installed-bench
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: demo test lint format bench clean

$(CORE): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) -e .
	touch $@

$(INSTALLED): $(CORE)
	$(PIP) -e '.[test]'
	$(PY) -m experiments.lm_eval_plugin --install
	touch $@

demo: $(CORE)
	$(VENV)/bin/scaling sweep experiments/configs/demo.yaml

$(BENCH): $(CORE)
	$(PIP) -e '.[bench]'
	touch $@

test: $(INSTALLED)
	$(PY) -m pytest

lint: $(INSTALLED)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(INSTALLED)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: $(BENCH)
	$(PY) bench/train_step.py
	$(PY) bench/fit.py
	$(PY) bench/emergence.py

clean:
	rm -rf runs reports
