# slim: the usual multi-stage build; the toolchain stage builds the ordinary (dynamically linked) binary, and only that binary ships on debian:trixie-slim.
# Builder and runtime are both Debian 13 "trixie", so the binary's glibc requirement is met by the runtime's glibc.
ARG RUST_IMAGE=rust:1-trixie
ARG RUNTIME_IMAGE=debian:trixie-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --offline --locked

FROM ${RUNTIME_IMAGE}

LABEL org.opencontainers.image.title="eco-service (slim)" \
      org.opencontainers.image.description="eco-docker demo web service, dynamically linked binary on debian:trixie-slim" \
      org.opencontainers.image.source="https://github.com/eco-docker/eco-docker" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      io.eco-docker.variant="slim"

COPY --from=build /src/target/release/eco-service /usr/local/bin/eco-service
# Numeric "nobody"-style user: no /etc/passwd entry is needed.
USER 65532:65532

EXPOSE 5000
ENTRYPOINT ["/usr/local/bin/eco-service"]
