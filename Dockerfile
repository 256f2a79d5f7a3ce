# jets3 images: one build stage compiles the binaries as static musl executables; each image is
# FROM scratch with one of them, a CA bundle and a non-root user (nonroot, 65532), and nothing
# else (no shell, no libc, no base image).
#
#   docker build --target gateway    -t jets3-gateway:0.1.0 .
#   docker build --target operator   -t jets3-operator:0.1.0 .
#   docker build --target e2e-client -t jets3-e2e-client:0.1.0 .   the S3 client of `helm test`
#
# GATEWAY_FEATURES adds Cargo features to the gateway, e.g. OpenTelemetry tracing:
#   docker build --build-arg GATEWAY_FEATURES=otel --target gateway -t jets3-gateway:0.1.0 .
#
# Plain Dockerfile syntax (no `# syntax=` frontend, no RUN --mount): BuildKit and the legacy
# builder both build it. scripts/images.sh builds the same runtime stages (everything from the
# first `FROM scratch` on) from binaries built on the host, with nothing to pull: it takes
# `COPY --from=build /out/<dir>/ /` from its own build context, filled by the same
# scripts/rootfs.sh. Keep that form.

ARG RUST_IMAGE=rust:1.95-alpine3.22

FROM ${RUST_IMAGE} AS build
# musl-dev: the C runtime ring's build links against (static); ca-certificates: the images' CA
# bundle. Their versions follow the Alpine branch the image tag pins; an exact apk pin would
# break whenever Alpine ships a fix.
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev ca-certificates
WORKDIR /src
COPY . .
# Release profile without debug info, symbols stripped: a small image.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
# A Cargo feature of the gateway to build in (otel), or none.
ARG GATEWAY_FEATURES=""
RUN cargo build --release --locked -p jets3-gateway --bin jets3-gateway -p jets3-operator --bin jets3-operator \
        -p jets3-e2e-client --bin jets3-e2e-client \
        ${GATEWAY_FEATURES:+--features "jets3-gateway/${GATEWAY_FEATURES}"} \
    && sh scripts/rootfs.sh /out/gateway target/release/jets3-gateway \
    && sh scripts/rootfs.sh /out/operator target/release/jets3-operator \
    && sh scripts/rootfs.sh /out/e2e-client target/release/jets3-e2e-client

FROM scratch AS gateway
COPY --from=build /out/gateway/ /
USER 65532:65532
# S3, admin (/healthz /readyz /metrics), config push (TLS)
EXPOSE 9000 9001 9443
ENTRYPOINT ["/usr/local/bin/jets3-gateway"]

FROM scratch AS operator
COPY --from=build /out/operator/ /
USER 65532:65532
# /metrics /healthz /readyz
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/jets3-operator"]

FROM scratch AS e2e-client
COPY --from=build /out/e2e-client/ /
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/jets3-e2e-client"]
