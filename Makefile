# geobatch — build, test and run targets.
#
# `make test` is what CI runs: it installs the pinned AWS emulator into .venv, checks
# formatting and lints, builds, and runs every unit and integration test.

PYTHON ?= python3
VENV := .venv
CARGO ?= cargo

.PHONY: all build venv test lint fmt unit clean

all: build

build:
	$(CARGO) build --workspace

## venv: a local virtualenv with the pinned moto[server] emulator and deploy tooling.
venv: $(VENV)/.installed

$(VENV)/.installed: deploy/requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r deploy/requirements-dev.txt
	touch $@

## lint: formatting and clippy with warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## test: everything CI checks.
test: venv lint
	GEOBATCH_MOTO_SERVER=$(CURDIR)/$(VENV)/bin/moto_server $(CARGO) test --workspace

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV)

.PHONY: bench-worker
## bench-worker: worker throughput on 200 small files against a private emulator (release build).
bench-worker: venv
	$(CARGO) build --release -p geobatch-worker
	$(VENV)/bin/python deploy/bench/worker_throughput.py
