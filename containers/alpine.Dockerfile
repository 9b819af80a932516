# alpine: the post's own choice of small base (python:3.10-alpine), here the static glibc binary on alpine:3.22, run as a non-root user.
# The binary is fully static, so alpine's musl libc is never used: the image adds busybox and apk to the static variant.
ARG RUST_IMAGE=rust:1-trixie
ARG RUNTIME_IMAGE=alpine:3.22

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN cargo build --release --offline --locked --target x86_64-unknown-linux-gnu

FROM ${RUNTIME_IMAGE}

LABEL org.opencontainers.image.title="eco-service (alpine)" \
      org.opencontainers.image.description="eco-docker demo web service, static binary on alpine:3.22" \
      org.opencontainers.image.source="https://github.com/eco-docker/eco-docker" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      io.eco-docker.variant="alpine"

COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/eco-service /usr/local/bin/eco-service
USER 65532:65532

EXPOSE 5000
# Exec form: no shell is involved. Engine 20.10 runs the first check only after one interval (no
# --start-interval before Engine 25), so 10 s keeps "healthy" quick without exec-ing too often.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/usr/local/bin/eco-service", "--health-check"]
ENTRYPOINT ["/usr/local/bin/eco-service"]
