# static: the smallest image we can make: a statically linked (glibc crt-static) binary alone on scratch; the binary is the only file in the image.
ARG RUST_IMAGE=rust:1-trixie

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# --target is required with crt-static: without it RUSTFLAGS also reach the proc-macro crates, which then fail to build.
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN cargo build --release --offline --locked --target x86_64-unknown-linux-gnu

FROM scratch

LABEL org.opencontainers.image.title="eco-service (static)" \
      org.opencontainers.image.description="eco-docker demo web service, static binary alone on scratch" \
      org.opencontainers.image.source="https://github.com/eco-docker/eco-docker" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      io.eco-docker.variant="static"

# The only file in the image. No CA certificates (the service makes no TLS connections), no /etc/passwd
# (a numeric USER needs none), no shell.
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/eco-service /eco-service
USER 65532:65532

EXPOSE 5000
# Exec form: scratch has no shell. Engine 20.10 runs the first check only after one interval (no
# --start-interval before Engine 25), so 10 s keeps "healthy" quick without exec-ing too often.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/eco-service", "--health-check"]
ENTRYPOINT ["/eco-service"]
