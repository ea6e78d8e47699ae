# geobatch-worker image. Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t geobatch-worker .
#
# Stage 1 builds the release binary on the same Debian release as the runtime stage (glibc
# 2.36); stage 2 is distroless/cc: glibc and libgcc only, no shell, no package manager, CA
# certificates for TLS to AWS, and a non-root user.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY common common
COPY controller controller
COPY worker worker
RUN cargo build --locked --release -p geobatch-worker \
    && cp target/release/geobatch-worker /geobatch-worker

# checkov:skip=CKV_DOCKER_2: ECS and systemd supervise the process, and ECS ignores an image HEALTHCHECK in favour of the task definition's; distroless has no HTTP client to probe /healthz with.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /geobatch-worker /usr/local/bin/geobatch-worker
# The task definition mounts a scratch volume at /tmp and keeps the root filesystem
# read-only; downloads are spooled there.
ENV TMPDIR=/tmp
# distroless's "nonroot" user, numerically so any runtime can resolve it.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/geobatch-worker"]
CMD ["run"]
