# syntax=docker/dockerfile:1
# jets3 images: one build stage compiles both binaries as static musl executables; each image
# holds one of them on distroless "static" (no shell, no libc, CA certificates, user 65532).
#
#   docker build --target gateway  -t jets3-gateway:0.1.0 .
#   docker build --target operator -t jets3-operator:0.1.0 .
#
# GATEWAY_FEATURES adds Cargo features to the gateway, e.g. OpenTelemetry tracing:
#   docker build --build-arg GATEWAY_FEATURES=otel --target gateway -t jets3-gateway:0.1.0 .
#
# The second build reuses the first one's build stage (BuildKit cache).

ARG RUST_IMAGE=rust:1.95-alpine3.22
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${RUST_IMAGE} AS build
# musl-dev: the C runtime ring's build links against (static). Its version follows the Alpine
# branch the image tag pins; an exact apk pin would break whenever Alpine ships a fix.
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
# Release profile without debug info, symbols stripped: a small image.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
# A Cargo feature of the gateway to build in (otel), or none.
ARG GATEWAY_FEATURES=""
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p jets3-gateway --bin jets3-gateway -p jets3-operator --bin jets3-operator \
        ${GATEWAY_FEATURES:+--features "jets3-gateway/${GATEWAY_FEATURES}"} \
    && mkdir -p /out \
    && cp target/release/jets3-gateway target/release/jets3-operator /out/

FROM ${RUNTIME_IMAGE} AS gateway
COPY --from=build /out/jets3-gateway /usr/local/bin/jets3-gateway
USER 65532:65532
# S3, admin (/healthz /readyz /metrics), config push (TLS)
EXPOSE 9000 9001 9443
ENTRYPOINT ["/usr/local/bin/jets3-gateway"]

FROM ${RUNTIME_IMAGE} AS operator
COPY --from=build /out/jets3-operator /usr/local/bin/jets3-operator
USER 65532:65532
# /metrics /healthz /readyz
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/jets3-operator"]
