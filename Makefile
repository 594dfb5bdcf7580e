# Two entry points, each self-sufficient on a fresh Debian machine with Python 3.11:
#   make run    set everything up, then run the demo (a signed link you can try)
#   make test   set everything up, then lint, type-check and run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml scripts/bootstrap.sh | cksum | cut -d' ' -f1)

.PHONY: run test lint typecheck pytest bench load cache-bench revocation-bench vectors clean

$(STAMP): pyproject.toml scripts/bootstrap.sh
	sh scripts/bootstrap.sh "$(PYTHON)"
	"$(PYTHON)" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m scripts.demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict signer gateway scripts benchmarks deploy/healthcheck.py tests

pytest: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks.verify_cost

load: $(STAMP)
	$(BIN)/python -m benchmarks.gateway_load

cache-bench: $(STAMP)
	$(BIN)/python -m benchmarks.cache_load

revocation-bench: $(STAMP)
	$(BIN)/python -m benchmarks.revocation

vectors: $(STAMP)
	$(BIN)/python -m scripts.generate_vectors

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis demo
