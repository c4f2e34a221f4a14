# The one task runner. `make setup` is idempotent; every other target depends on it.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: setup test unit lint stack bench iac clean soak fuzz

$(STAMP): pyproject.toml scripts/setup-machine.sh
	bash scripts/setup-machine.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## Every test: unit, then emulator (the emulators start and stop inside pytest), then e2e.
test: setup
	$(PY) -m pytest -q tests --ignore=tests/contract

unit: setup
	$(PY) -m pytest -q tests/unit

lint: setup
	$(PY) -m ruff check services functions infra devtools tests bench
	$(PY) -m ruff format --check services functions infra devtools tests bench
	$(PY) -m mypy

## The whole local stack: emulators, fakes, functions, worker, dashboard, demo traffic.
stack: setup
	$(PY) -m devtools.local.stack $(ARGS)

bench: setup
	$(PY) -m bench.run

## The full soak: the whole stack, SOAK_JOBS jobs with faults, then the reconciliation (JSON, exit 1 on
## any gap). SOAK_MINUTES bounds sending and draining; starting and reading back add about a minute.
SOAK_JOBS    ?= 10000
SOAK_MINUTES ?= 45
soak: setup
	$(PY) -m devtools.local.soak --jobs $(SOAK_JOBS) --minutes $(SOAK_MINUTES) --output bench/results/soak.json $(ARGS)

## The fuzzers' long run: the tests CI runs with a few dozen examples each, with thousands.
fuzz: setup
	$(PY) -m pytest -q -p tests.fuzz.profiles --hypothesis-profile=jobtrail-fuzz-long tests/fuzz tests/unit/test_fuzz_payloads.py

## Offline Terraform and Cloud Build checks, then the deployment contract: every entry point started
## with the environment Terraform renders (tests/contract; needs the Terraform the check installs).
iac: setup
	../shared/iac/check
	$(PY) -m pytest -q tests/contract

clean:
	rm -rf $(VENV) .emulators .pytest_cache
