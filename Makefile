# The one task runner. `make setup` is idempotent; every other target depends on it.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: setup test unit lint stack bench iac clean

$(STAMP): pyproject.toml scripts/setup-machine.sh
	bash scripts/setup-machine.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## Every test: unit, then emulator (the emulators start and stop inside pytest), then e2e.
test: setup
	$(PY) -m pytest -q tests

unit: setup
	$(PY) -m pytest -q tests/unit

lint: setup
	$(PY) -m ruff check services functions infra tests bench
	$(PY) -m ruff format --check services functions infra tests bench
	$(PY) -m mypy

## The whole local stack: emulators, fakes, functions, worker, dashboard, demo traffic.
stack: setup
	$(PY) -m services.local.stack $(ARGS)

bench: setup
	$(PY) -m bench.run

iac:
	../shared/iac/check

clean:
	rm -rf $(VENV) .emulators .pytest_cache
