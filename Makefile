# Quick start:  make demo  (install, train the NLU (seconds), migrate, seed, serve on http://127.0.0.1:5005)
#               make test  (install with dev tools, run the test suite)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo install serve shell train test lint audit bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/python -m nlu train --data data/ --config config.yml --out models/

demo: $(STAMP) train
	$(BIN)/python -m bot db upgrade
	$(BIN)/python -m bot seed
	$(BIN)/python -m bot serve --host 127.0.0.1 --port 5005

shell: $(STAMP) train
	$(BIN)/python -m bot db upgrade
	$(BIN)/python -m bot seed
	$(BIN)/python -m bot shell

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	VENV=$(VENV) bash deploy/lint.sh

# Known vulnerabilities in requirements.lock (needs PyPI's JSON API; see deploy/audit.sh).
audit: $(STAMP)
	VENV=$(VENV) bash deploy/audit.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/turns.py --start both

clean:
	rm -rf $(VENV) var models .pytest_cache .ruff_cache
