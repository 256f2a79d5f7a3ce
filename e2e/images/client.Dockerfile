# The S3 client of the cluster scenario suite (e2e/client), built by scripts/images.sh from the
# host-built static binary laid out by scripts/rootfs.sh, like the jets3 images.
FROM scratch
COPY out/e2e-client/ /
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/jets3-e2e-client"]
