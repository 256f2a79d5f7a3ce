module jets3.local/benchtools/warp

go 1.25.0

require github.com/minio/warp v1.3.1
