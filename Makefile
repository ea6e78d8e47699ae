# geobatch — build, test and run targets.
#
# `make test` is what CI runs: it installs the pinned AWS emulator into .venv, checks
# formatting and lints, builds, and runs every unit and integration test.

PYTHON ?= python3
VENV := .venv
CARGO ?= cargo

.PHONY: all build venv test lint fmt unit clean bench-controller

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

## bench-controller: scale-out latency, idle RSS and CPU of the release controller against
## the emulator (recorded in docs/benchmarks.md, "## Controller").
bench-controller: venv
	$(CARGO) build --release -p geobatch-controller --bin geobatch-controller --example bench_controller
	GEOBATCH_MOTO_SERVER=$(CURDIR)/$(VENV)/bin/moto_server \
		./target/release/examples/bench_controller ./target/release/geobatch-controller

## bench-scaling: every simulator scenario through every policy (release build); records
## the results in docs/scaling.md and the README plot in docs/img/.
.PHONY: bench-scaling
bench-scaling:
	bash controller/bench/scaling.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV)
