# syntax=docker/dockerfile:1
# The shardgate image: the `dist` build (Cargo.toml: LTO, one codegen unit) in the Rust image, shipped on
# Debian slim, running as a non-root user.
# Build and run with docker-compose.yml, or: docker build -t shardgate . &&
#   docker run -p 6432:6432 -v $PWD/shards.toml:/etc/shardgate/shards.toml:ro shardgate

# Bookworm on both sides, so the binary's glibc matches the runtime's.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and compiled dependencies between builds without baking them into layers;
# the binary is copied out because the target dir is a mount that vanishes after this step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked --bin shardgate \
    && install -D -m 0755 target/dist/shardgate /out/shardgate

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin shardgate \
    && mkdir -p /etc/shardgate
COPY --from=build /out/shardgate /usr/local/bin/shardgate
USER shardgate
EXPOSE 6432
ENV RUST_LOG=info
# SIGINT is the signal the proxy already handles for a clean shutdown (Ctrl-C); as PID 1 an unhandled
# SIGTERM would be ignored and `docker stop` would wait for its SIGKILL.
STOPSIGNAL SIGINT
ENTRYPOINT ["shardgate"]
CMD ["--config", "/etc/shardgate/shards.toml"]
