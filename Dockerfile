# syntax=docker/dockerfile:1
#
# The Docker way to build the same image `cargo xtask image build` assembles
# without a daemon: a static musl items-api on distroless static, as uid 65532.
# Kept equivalent to xtask/src/parts/oci.rs (user, entrypoint, port, healthcheck,
# labels); the xtask image is what the pipeline ships, because it is
# reproducible and builds where no base image can be pulled.
#
#   docker build --build-arg GIT_COMMIT=$(git rev-parse HEAD) -t service-demo .

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
# musl-tools: the C compiler for the musl target (items-api's allocator, mimalloc, is C).
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
ENV CC_x86_64_unknown_linux_musl=musl-gcc
WORKDIR /src

# Dependencies first, from the manifests alone: this layer is reused until
# Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
COPY services/items-api/Cargo.toml services/items-api/
COPY crates/service-kit/Cargo.toml crates/service-kit/
COPY crates/test-skip/Cargo.toml crates/test-skip/
COPY xtask/Cargo.toml xtask/
RUN mkdir -p services/items-api/src crates/service-kit/src crates/test-skip/src xtask/src \
 && echo 'fn main() {}' > services/items-api/src/main.rs \
 && touch services/items-api/src/lib.rs crates/service-kit/src/lib.rs crates/test-skip/src/lib.rs \
 && echo 'fn main() {}' > xtask/src/main.rs \
 && cargo build --release --locked --package items-api --target x86_64-unknown-linux-musl \
 && rm -rf services/items-api/src crates/service-kit/src

# Then the service itself (its build script and the migrations it embeds), and
# service-kit, the crate it serves through.
COPY crates/service-kit/src crates/service-kit/src
COPY services/items-api/build.rs services/items-api/
COPY services/items-api/migrations services/items-api/migrations
COPY services/items-api/src services/items-api/src
ARG GIT_COMMIT=unknown
RUN touch services/items-api/src/main.rs services/items-api/src/lib.rs crates/service-kit/src/lib.rs \
 && ITEMS_API_GIT_COMMIT=${GIT_COMMIT} \
    cargo build --release --locked --package items-api --target x86_64-unknown-linux-musl

FROM gcr.io/distroless/static-debian12:nonroot
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.source="https://github.com/example/service-demo" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.title="items-api" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
COPY --from=builder /src/target/x86_64-unknown-linux-musl/release/items-api /usr/local/bin/items-api
USER 65532:65532
WORKDIR /home/nonroot
ENV PORT=8080
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=2s --retries=3 \
    CMD ["/usr/local/bin/items-api", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/items-api"]
