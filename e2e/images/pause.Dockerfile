# The pod sandbox ("pause") image of the e2e/cluster node, like upstream's
# (kubernetes/build/pause): pause.c from the pinned k8s.io/kubernetes module, compiled by
# e2e/cluster/cluster.sh with gcc -static.
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
