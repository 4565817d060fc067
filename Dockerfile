# syntax=docker/dockerfile:1
# The one Herald image: a static `herald` binary (musl) on distroless, non-root.
#   docker build -t ghcr.io/herald-dev/herald:0.1.0 .
# Every component is a subcommand: `herald operator`, `herald ingress`,
# `herald dispatcher` (also the consumer Deployments' sidecar), ...

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p herald --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/herald /herald

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /herald /usr/local/bin/herald
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/herald"]
CMD ["--help"]
