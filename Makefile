# geobatch — build, test and run targets.
#
# `make test` is what CI runs: it installs the pinned AWS emulator into .venv, checks
# formatting and lints, builds, and runs every unit and integration test.

PYTHON ?= python3
VENV := .venv
CARGO ?= cargo

.PHONY: all build venv test lint fmt unit clean bench-analysis

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

## bench-analysis: the analysis engine against GDAL on a generated 320 MB file and
## countries-land-10m (needs gdal-bin, time, npm; see deploy/bench/analysis.sh).
bench-analysis:
	bash deploy/bench/analysis.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV)
