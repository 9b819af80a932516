# standard: the naive way (the Rust twin of the post's `FROM python:3.10`): one stage on the full toolchain image, so the compiler, sources, vendored crates and build artefacts all ship.
ARG RUST_IMAGE=rust:1-trixie

FROM ${RUST_IMAGE}

WORKDIR /src
# The staged context: Cargo.toml, Cargo.lock, service/, vendor/ and .cargo/config.toml (vendored sources).
COPY . .
RUN cargo build --release --offline --locked

LABEL org.opencontainers.image.title="eco-service (standard)" \
      org.opencontainers.image.description="eco-docker demo web service, naive single-stage image on the full Rust toolchain" \
      org.opencontainers.image.source="https://github.com/eco-docker/eco-docker" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      io.eco-docker.variant="standard"

EXPOSE 5000
ENTRYPOINT ["/src/target/release/eco-service"]
