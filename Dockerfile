# syntax=docker/dockerfile:1
# Images of Suyun's two server components, built from this repository in one builder stage:
#
#   docker build --target operator  -t suyun-operator:0.1.0  .   # suyun-operator (+ suyunctl)
#   docker build --target apiserver -t suyun-apiserver:0.1.0 .   # suyun-apiserver
#
# The final stages are distroless (glibc, CA certificates, no shell, no package manager) and
# run as the numeric non-root user 65532, which the Helm chart's security context also sets.
# tests/tests/dockerfile.rs checks these invariants; docs/install.md explains how to build and
# mirror the images.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# --- builder: the Rust toolchain on the same Debian release as the runtime (same glibc) ---
FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
# etcd-client compiles etcd's protobuf definitions with protoc at build time; they import
# google/protobuf/*.proto, which Debian ships in libprotobuf-dev (not pulled in without
# recommends). The builder is not shipped, and its packages come from the one Debian release
# pinned above.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p suyun-operator -p suyun-apiserver --bins \
 && mkdir -p /out \
 && cp target/release/suyun-operator target/release/suyunctl target/release/suyun-apiserver /out/

# --- operator: the controllers (and the offline planner CLI) ---
FROM gcr.io/distroless/cc-debian12:nonroot AS operator
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="suyun-operator" \
      org.opencontainers.image.description="Suyun (苏云) operator: reconciles the provincial cloud's nodes, tenants, systems and migration waves" \
      org.opencontainers.image.source="https://github.com/suyun-io/suyun" \
      org.opencontainers.image.url="https://github.com/suyun-io/suyun" \
      org.opencontainers.image.documentation="https://github.com/suyun-io/suyun/blob/main/docs/install.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Suyun maintainers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /out/suyun-operator /out/suyunctl /usr/local/bin/
USER 65532:65532
# Metrics, /healthz and /readyz (--metrics-listen).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/suyun-operator"]

# --- apiserver: the city operators' REST API (reads only etcd) ---
FROM gcr.io/distroless/cc-debian12:nonroot AS apiserver
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="suyun-apiserver" \
      org.opencontainers.image.description="Suyun (苏云) REST API for city operators: HTTPS, reads the etcd status store" \
      org.opencontainers.image.source="https://github.com/suyun-io/suyun" \
      org.opencontainers.image.url="https://github.com/suyun-io/suyun" \
      org.opencontainers.image.documentation="https://github.com/suyun-io/suyun/blob/main/docs/install.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Suyun maintainers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /out/suyun-apiserver /usr/local/bin/
USER 65532:65532
# HTTPS API (--listen) and metrics (--metrics-listen).
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/suyun-apiserver"]
