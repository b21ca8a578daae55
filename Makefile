# The two commands of the README: `make demo` and `make test`.
# Each installs only what is missing (stamps make a second run fast), then runs.

VENV      ?= .venv
PYTHON    ?= python3
BIN       := $(VENV)/bin
PY_STAMP  := $(VENV)/.okai-installed
NPM_STAMP := node_modules/.okai-installed
SYS_STAMP := .okai/.system-deps-installed

.PHONY: setup demo test lint typecheck clean

setup: $(PY_STAMP) $(NPM_STAMP) $(SYS_STAMP)

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

$(SYS_STAMP): scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	mkdir -p $(dir $@) && touch $@

demo: setup
	$(BIN)/okai demo

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

typecheck: setup
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(VENV) node_modules .okai .pytest_cache .mypy_cache .ruff_cache
