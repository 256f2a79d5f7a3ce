module jets3.local/benchtools/nats-s3

go 1.25.0

require github.com/wpnpeiris/nats-s3 v0.4.1
