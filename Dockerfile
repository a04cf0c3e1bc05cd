# syntax=docker/dockerfile:1
#
# snowgate container image.
#
#   docker build -t snowgate .
#   docker run -d --name snowgate -p 8080:8080 \
#     -v "$PWD/snowgate.yaml:/etc/snowgate/snowgate.yaml:ro" \
#     -v snowgate-data:/var/lib/snowgate snowgate
#
# The configuration file must listen on all interfaces inside the container
# (`server.bind: "0.0.0.0:8080"`) and keep the store on the volume
# (`store.url: "sqlite:///var/lib/snowgate/snowgate.db"`; the default relative
# `sqlite://snowgate.db` lands there too, since it is the working directory).
# No SNOWGATE__* variables are set here on purpose: they would silently override the file.
# Secrets are best mounted as files and named with `*_file` keys (see config.example.yaml).
#
# Other subcommands run in the same image:
#   docker run --rm -v "$PWD/snowgate.yaml:/etc/snowgate/snowgate.yaml:ro" snowgate check --config /etc/snowgate/snowgate.yaml
#   docker exec -e SNOWGATE_TOKEN=… snowgate snowgate gates list

# ---- build ----------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# Only what the release binary needs (see .dockerignore); tests are not built here. Without the
# default `sim` feature: the image has no simulator, `snowgate sim`, `demo` or `bench`; with the
# `postgres` feature, so that the image takes a PostgreSQL store.url as well as SQLite.
COPY Cargo.toml Cargo.lock ./
# actix-http with snowgate's smaller connection buffers ([patch.crates-io], vendor/README.md),
# and the SQLite build flag (fdatasync) in .cargo/config.toml.
COPY vendor ./vendor
COPY .cargo ./.cargo
COPY crates ./crates
COPY migrations ./migrations
# Cache mounts keep the crate registry and compiled dependencies between builds (BuildKit).
# The binary is copied out of the cached target directory, which is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p snowgate --no-default-features --features postgres --bin snowgate \
 && install -D -m 0755 target/release/snowgate /out/snowgate

# ---- runtime --------------------------------------------------------------------------------
FROM debian:bookworm-slim

# CA certificates: ServiceNow is reached over HTTPS. (The binary bundles its TLS roots via
# rustls, but a proxy or `servicenow.ca_file` setup expects the system bundle to be there.)
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it and volumes can be
# prepared for it (fsGroup, chown).
RUN groupadd --system --gid 10001 snowgate \
 && useradd --system --uid 10001 --gid snowgate --no-create-home \
        --home-dir /var/lib/snowgate --shell /usr/sbin/nologin snowgate \
 && install -d -o snowgate -g snowgate -m 0750 /var/lib/snowgate \
 && install -d -m 0755 /etc/snowgate

COPY --from=builder /out/snowgate /usr/local/bin/snowgate
COPY config.example.yaml /etc/snowgate/config.example.yaml

# The SQLite store (gates, decisions, outbox). Losing it loses pending gates.
VOLUME ["/var/lib/snowgate"]
WORKDIR /var/lib/snowgate
USER 10001:10001

# For the CLI inside the container (`snowgate gates …`, `snowgate healthcheck`).
ENV SNOWGATE_URL=http://127.0.0.1:8080

EXPOSE 8080

# The image has no curl: the binary checks itself (GET /healthz, exit 0 or 1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/snowgate", "healthcheck"]

# Exec form: snowgate is PID 1 and receives SIGTERM itself; it then answers open long-polls,
# finishes in-flight requests (server.shutdown_timeout, 10 s by default) and exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/snowgate"]
CMD ["serve", "--config", "/etc/snowgate/snowgate.yaml"]
