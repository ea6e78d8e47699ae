# geobatch — build, test and run targets.
#
# `make test` is what CI runs: it installs the pinned AWS emulator and deploy linters into
# .venv, checks formatting and lints, lints and scans the CloudFormation template and the
# Dockerfiles, runs every unit and integration test, builds the images (podman, offline), then
# the local-stack and image tests and the end-to-end fault test with the workers in containers.

PYTHON ?= python3
VENV := .venv
CARGO ?= cargo

.PHONY: all build venv test lint fmt unit clean deploy-lint deploy-unit fault-test demo \
	bench-analysis bench-worker bench-controller bench-scaling images bench-images \
	bench-hostile bench-spot bench-geo

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
	$(CARGO) clippy -p geobatch-analysis --all-targets --features geo -- -D warnings

## test: everything CI checks.
test: venv lint deploy-lint
	GEOBATCH_MOTO_SERVER=$(CURDIR)/$(VENV)/bin/moto_server $(CARGO) test --workspace
	$(CARGO) test -p geobatch-analysis --features geo
	$(MAKE) images
	GEOBATCH_LOCAL_RUNNER=container GEOBATCH_REQUIRE_IMAGES=1 $(MAKE) deploy-unit fault-test

## images: the worker and controller images, offline, with podman (installed if missing: run
## as root), from the debug binaries `cargo test --workspace` builds, on base images made from
## this machine's Debian packages. The ECR build uses the same Dockerfiles (docs/deploy.md).
images:
	bash deploy/docker/install-podman.sh
	$(CARGO) build --workspace --all-targets
	bash deploy/docker/images.sh $(CURDIR)/target/debug

## deploy-lint: the CloudFormation template (cfn-lint, checkov) and the Dockerfiles
## (hadolint, checkov). Skipped checks carry their reason next to the resource.
TEMPLATE := deploy/cloudformation/geobatch.yaml
DOCKERFILES := $(wildcard deploy/docker/*.Dockerfile)
CHECKOV := $(VENV)/bin/checkov --quiet --compact --skip-download
deploy-lint: venv
	$(VENV)/bin/cfn-lint $(TEMPLATE)
	$(CHECKOV) --framework cloudformation -f $(TEMPLATE)
	$(VENV)/bin/hadolint $(DOCKERFILES)
	$(CHECKOV) --framework dockerfile $(addprefix -f ,$(DOCKERFILES))

# deploy-unit and fault-test build every target, as `cargo test --workspace` does, so that
# after it they reuse its binaries instead of rebuilding the AWS SDK with another feature set.
LOCAL_STACK := PYTHONPATH=$(CURDIR)/deploy/local $(CURDIR)/$(VENV)/bin/python

## deploy-unit: unit and emulator tests of the local stack tooling (deploy/local).
deploy-unit: venv
	$(CARGO) build --workspace --all-targets
	cd deploy/local && $(LOCAL_STACK) -m unittest discover -s tests -t . -v

## fault-test: the end-to-end fault test: the whole stack in the emulator, workers killed.
fault-test: venv
	$(CARGO) build --workspace --all-targets
	$(LOCAL_STACK) -m geobatch_local.fault_test --target-dir $(CURDIR)/target/debug

## demo: the whole pipeline on this machine against the emulator (see docs/deploy.md); the
## workers run in containers when `make images` has built the image from these binaries, so
## the build is the one `make test` and `make images` make.
demo: venv
	$(CARGO) build --workspace --all-targets
	$(LOCAL_STACK) -m geobatch_local.demo --target-dir $(CURDIR)/target/debug

## bench-worker: worker throughput on 200 small files against a private emulator (release build).
bench-worker: venv
	$(CARGO) build --release -p geobatch-worker
	$(VENV)/bin/python deploy/bench/worker_throughput.py

## bench-controller: scale-out latency, idle RSS and CPU of the release controller against
## the emulator (recorded in docs/benchmarks.md, "## Controller").
bench-controller: venv
	$(CARGO) build --release -p geobatch-controller --bin geobatch-controller --example bench_controller
	GEOBATCH_MOTO_SERVER=$(CURDIR)/$(VENV)/bin/moto_server \
		./target/release/examples/bench_controller ./target/release/geobatch-controller

## bench-images: image sizes, and worker start to its first ReceiveMessage as a container and
## as a process (recorded in docs/benchmarks.md, "## Images"); also makes :release images of
## the release binaries, stripped of line tables as the ECR build strips them.
bench-images: venv images
	$(CARGO) build --release -p geobatch-worker
	$(CARGO) build --release -p geobatch-controller --bin geobatch-controller --example bench_controller
	GEOBATCH_IMAGE_TAG=release GEOBATCH_IMAGE_STRIP=debuginfo bash deploy/docker/images.sh $(CURDIR)/target/release
	$(VENV)/bin/python deploy/bench/container_start.py

## bench-scaling: every simulator scenario through every policy (release build); records
## the results in docs/scaling.md and the README plot in docs/img/.
bench-scaling:
	bash controller/bench/scaling.sh

## bench-spot: geobatch on On-Demand, Spot (advisor band and a stress rate) and a warm pool,
## every scenario over seeds 1-5 (release build); records docs/scaling.md "Spot and warm-pool results".
bench-spot:
	bash controller/bench/spot.sh

## bench-hostile: peak RSS and time of the release analysis on adversarial inputs next to a
## plain file of the same size (deploy/bench/hostile.py; docs/benchmarks.md, "Hostile inputs").
bench-hostile:
	$(CARGO) build --release -p geobatch-worker --bin geobatch-worker
	$(PYTHON) deploy/bench/hostile.py target/release/geobatch-worker

## bench-geo: what the `geo` path (the example hull worker's analysis) costs next to the
## built-in report on the same real files (criterion; docs/benchmarks.md, "The geo path").
bench-geo:
	$(CARGO) bench -p geobatch-analysis --features geo --bench georust
	$(PYTHON) deploy/bench/geo_table.py target/criterion/geo_path

## bench-analysis: the analysis engine against GDAL on a generated 320 MB file and
## countries-land-10m (needs gdal-bin, time, npm; see deploy/bench/analysis.sh).
bench-analysis:
	bash deploy/bench/analysis.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV)
