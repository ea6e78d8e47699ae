# geobatch-controller image. Two ways to build it from this one file (docs/deploy.md):
#
# - for ECR, from the repository root, with public base images: stage "build" compiles the
#   release binary on the same Debian release as the runtime base (glibc 2.36):
#     docker build -f deploy/docker/controller.Dockerfile -t geobatch-controller .
# - offline (`make images`): BINARY=prebuilt copies an already built binary from the build
#   context, and BASE is the local base image deploy/docker/base.sh makes from Debian's
#   packages, laid out as the public one.
#
# The runtime base has glibc, libgcc, CA certificates and the non-root user 65532: no
# shell, no package manager. The controller instance copies the binary's systemd unit out
# of this image at boot (see the stack's ControllerLaunchTemplate) and runs the image under
# systemd.
ARG BASE=gcr.io/distroless/cc-debian12:nonroot
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
RUN cargo build --locked --release -p geobatch-controller \
    && cp target/release/geobatch-controller /geobatch-controller

# BINARY=release: the binary stage "build" made.
FROM scratch AS release
COPY --from=build /geobatch-controller /geobatch-controller

# BINARY=prebuilt: the build context holds the binary (make images: the debug build).
FROM scratch AS prebuilt
COPY geobatch-controller /geobatch-controller

# checkov:skip=CKV_DOCKER_7: ${BINARY} names one of the two stages above (release or prebuilt), not an image; every image this file pulls has a version tag.
FROM ${BINARY} AS binary

# checkov:skip=CKV_DOCKER_2: ECS and systemd supervise the process, and ECS ignores an image HEALTHCHECK in favour of the task definition's; the image has no HTTP client to probe /healthz with.
FROM ${BASE}
COPY --from=binary /geobatch-controller /usr/local/bin/geobatch-controller
COPY deploy/systemd/geobatch-controller.service /usr/share/geobatch/geobatch-controller.service
# The base's "nonroot" user, numerically so any runtime can resolve it.
USER 65532:65532
# Metrics and health on 9090 (bind it to the host's loopback or a private interface).
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/geobatch-controller"]
CMD ["run", "--config", "/etc/geobatch/controller.toml"]
