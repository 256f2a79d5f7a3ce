# The cluster DNS of the e2e/cluster node: the coredns binary scripts/tools-k8s.sh builds
# (static, CGO off). It listens on an unprivileged port, so it runs as nonroot.
FROM scratch
COPY coredns /coredns
USER 65532:65532
EXPOSE 1053/udp 1053/tcp
ENTRYPOINT ["/coredns"]
