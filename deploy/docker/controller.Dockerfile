# geobatch-controller image. Build from the repository root:
#   docker build -f deploy/docker/controller.Dockerfile -t geobatch-controller .
#
# The controller instance copies the binary's systemd unit out of this image at boot (see
# the stack's ControllerLaunchTemplate) and runs the image under systemd.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY common common
COPY controller controller
COPY worker worker
RUN cargo build --locked --release -p geobatch-controller \
    && cp target/release/geobatch-controller /geobatch-controller

# checkov:skip=CKV_DOCKER_2: ECS and systemd supervise the process, and ECS ignores an image HEALTHCHECK in favour of the task definition's; distroless has no HTTP client to probe /healthz with.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /geobatch-controller /usr/local/bin/geobatch-controller
COPY deploy/systemd/geobatch-controller.service /usr/share/geobatch/geobatch-controller.service
# distroless's "nonroot" user, numerically so any runtime can resolve it.
USER 65532:65532
# Metrics and health on 9090 (bind it to the host's loopback or a private interface).
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/geobatch-controller"]
CMD ["run", "--config", "/etc/geobatch/controller.toml"]
