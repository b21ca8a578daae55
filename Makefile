# The two commands of the README: `make demo` and `make test`.
# Each installs only what is missing (stamps make a second run fast), then runs.

VENV      ?= .venv
PYTHON    ?= python3
BIN       := $(VENV)/bin
PY_STAMP  := $(VENV)/.okai-installed
NPM_STAMP := node_modules/.okai-installed
SYS_STAMP := .okai/.system-deps-installed
WEB_STAMP := web/node_modules/.okai-installed
# The verification page, rebuilt when its sources or the registry ABI change.
WEB_PAGE  := web/dist/index.html
WEB_SRC   := $(shell find web/src web/public -type f 2>/dev/null) web/index.html \
             web/vite.config.js web/package.json src/okai/chain/artifacts/ProvenanceRegistry.json

.PHONY: setup demo test lint typecheck clean

setup: $(PY_STAMP) $(NPM_STAMP) $(SYS_STAMP) $(WEB_PAGE)

# The runtime packages are exactly requirements.lock (the image installs the same
# files, docs/image.md); the dev tools come after and must not move them.
$(PY_STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python scripts/python-lock.py check
	touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

$(WEB_STAMP): web/package.json web/package-lock.json | $(SYS_STAMP)
	cd web && npm ci --no-audit --no-fund
	touch $@

$(WEB_PAGE): $(WEB_SRC) $(WEB_STAMP)
	cd web && npm run build
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

# One worker more than the cores: tests wait on sockets, subprocesses and timeouts part of
# the time, and the extra worker fills those waits (on 2 cores, 2 / 3 / 4 workers: 387 /
# 348 / 387 s); `make test TEST_WORKERS=N` sets it. loadgroup keeps the network-namespace
# tests on one worker and each module's module-scoped fixtures on one (tests/conftest.py,
# which also orders the tests: xdist must not reorder them). `pytest -n 0` runs them in one
# process.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

clean:
	rm -rf $(VENV) node_modules web/node_modules web/dist .okai .pytest_cache .mypy_cache .ruff_cache
