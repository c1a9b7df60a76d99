# The two set-up commands of the README: `make demo` and `make test`.
# Both create (or reuse) the virtual environment .venv and install the project into it.
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint format bench clean

$(INSTALLED): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

demo: $(INSTALLED)
	$(VENV)/bin/scaling sweep experiments/configs/demo.yaml

test: $(INSTALLED)
	$(PY) -m pytest

lint: $(INSTALLED)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(INSTALLED)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: $(INSTALLED)
	$(PY) bench/train_step.py
	$(PY) bench/fit.py
	$(PY) bench/emergence.py

clean:
	rm -rf runs reports
