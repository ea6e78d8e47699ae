# geobatch-worker image. Two ways to build it from this one file (docs/deploy.md):
#
# - for ECR, from the repository root, with public base images: stage "build" compiles the
#   release binary on the same Debian release as the runtime base (glibc 2.36):
#     docker build -f deploy/docker/worker.Dockerfile -t geobatch-worker .
# - offline (`make images`): BINARY=prebuilt copies an already built binary from the build
#   context, and BASE is the local base image deploy/docker/base.sh makes from Debian's
#   packages, laid out as the public one.
#
# The runtime base has glibc, libgcc, CA certificates, the non-root user 65532 and
# busybox's sh (in /busybox), which `--exec` runs commands with; no package manager.
ARG BASE=gcr.io/distroless/cc-debian12:debug-nonroot
ARG BINARY=release

FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
# Without the line tables the release profile keeps, the binary is a fifth of the size
# (worker: 150 MB to 30 MB); backtraces keep function names (docs/benchmarks.md, "## Images").
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
COPY Cargo.toml Cargo.lock ./
COPY common common
COPY controller controller
COPY worker worker
RUN cargo build --locked --release -p geobatch-worker \
    && cp target/release/geobatch-worker /geobatch-worker

# BINARY=release: the binary stage "build" made.
FROM scratch AS release
COPY --from=build /geobatch-worker /geobatch-worker

# BINARY=prebuilt: the build context holds the binary (make images: the debug build).
FROM scratch AS prebuilt
COPY geobatch-worker /geobatch-worker

# checkov:skip=CKV_DOCKER_7: ${BINARY} names one of the two stages above (release or prebuilt), not an image; every image this file pulls has a version tag.
FROM ${BINARY} AS binary

# checkov:skip=CKV_DOCKER_2: ECS and systemd supervise the process, and ECS ignores an image HEALTHCHECK in favour of the task definition's; the image has no HTTP client to probe /healthz with.
FROM ${BASE}
COPY --from=binary /geobatch-worker /usr/local/bin/geobatch-worker
# The task definition mounts a scratch volume at /tmp and keeps the root filesystem
# read-only; downloads are spooled there.
ENV TMPDIR=/tmp
# Scripts that start with #!/bin/sh or #!/usr/bin/env find busybox there (the base keeps it in
# /busybox only). DL4005 is about the shell of RUN lines; this one is for the user's scripts.
USER 0
# hadolint ignore=DL4005
RUN ["/busybox/sh", "-c", "mkdir -p /bin /usr/bin && ln -sf /busybox/sh /bin/sh && ln -sf /busybox/env /usr/bin/env"]
# `--exec process_file` finds a program of yours on PATH: put it in /usr/local/bin in an
# image built FROM this one (docs/deploy.md, "Running your own process_file").
# The base's "nonroot" user, numerically so any runtime can resolve it.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/geobatch-worker"]
CMD ["run"]
