# jets3: the commands a person runs. The scripts in scripts/ do the work.
SHELL := /usr/bin/env bash
CARGO ?= cargo

.PHONY: help tools dev test lint build fuzz images cluster-up cluster-down e2e-cluster e2e-kind

help:
	@echo "make dev     run nats-server + jets3-gateway locally with a demo bucket (Ctrl-C stops)"
	@echo "make test    install test tools, then fmt, clippy, cargo test, release build, chart, client and cluster suites"
	@echo "make tools   install the pinned third-party tools (tests and benchmarks) into \$${JETS3_TOOLS_DIR:-~/.cache/jets3}"
	@echo "make bench-quick / make bench   jets3 side by side with nats-s3 and raw NATS (BENCHMARKS.md); make bench adds listing at 1k, 1M and 10M objects"
	@echo "make bench-lifecycle   bytes that linger after overwrites, collector pass time (BENCHMARKS.md)"
	@echo "make bench-listing     buckets of 100k and 1M objects: first-page time, RSS and page latency per gateway start (BENCHMARKS.md)"
	@echo "make bench-faults / make bench-soak   NATS-cluster faults and a 30-minute soak (RELIABILITY.md)"
	@echo "make lint    cargo fmt --check, import cycles (scripts/check-cycles.py) and clippy -D warnings"
	@echo "make build   cargo build --release -p jets3-gateway"
	@echo "make fuzz    every cargo-fuzz target for FUZZ_SECONDS (default 600) each (nightly)"
	@echo "make images       the images (gateway, operator, test client, local NATS) from host-built static binaries"
	@echo "make cluster-up   a single-node Kubernetes here with the images loaded, to try the chart by hand (root)"
	@echo "make cluster-down stop it and put the host back as it was"
	@echo "make e2e-cluster  images + that cluster + the cluster scenario suite, then stop it (root; part of make test)"
	@echo "make e2e-kind     the same suite on a kind cluster (needs Docker and kind)"

# Test tools, then the benchmark peers (nats-s3, warp). `make test` installs only the former.
tools:
	bash scripts/tools.sh
	bash scripts/tools-bench.sh

dev:
	bash scripts/dev.sh

test:
	bash scripts/test.sh

lint:
	$(CARGO) fmt --all -- --check
	python3 scripts/check-cycles.py
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	python3 scripts/check-docs.py

build:
	$(CARGO) build --release -p jets3-gateway

FUZZ_SECONDS ?= 600
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh

images:
	bash scripts/images.sh

cluster-up: images
	bash e2e/cluster/cluster.sh up
	bash e2e/cluster/cluster.sh load $$(bash scripts/images.sh --list)
	@echo
	@echo "export KUBECONFIG=$$(bash e2e/cluster/cluster.sh kubeconfig) PATH=$${JETS3_TOOLS_DIR:-$$HOME/.cache/jets3}/bin:\$$PATH"
	@echo "helm install jets3 charts/jets3 -n jets3 --create-namespace --set nats.embedded.enabled=true \\"
	@echo "  --set nats.embedded.image.repository=jets3-nats --set nats.embedded.image.tag=$$(bash scripts/images.sh --list | sed -n 's/^jets3-nats://p')"

cluster-down:
	bash e2e/cluster/cluster.sh down

e2e-cluster:
	bash e2e/cluster/e2e.sh

e2e-kind:
	bash e2e/kind/e2e.sh
# ---- side-by-side benchmark (BENCHMARKS.md) ------------------------------------------------------
.PHONY: tools-bench bench bench-quick bench-lifecycle bench-listing bench-faults bench-soak

tools-bench:
	bash scripts/tools-bench.sh

# The full run: the side-by-side table, then listing at 1k, 1M and 10M objects (about 25 GB of
# free disk for the 10M bucket; JETS3_LISTING_SIZES picks others).
bench:
	bash scripts/bench.sh full
	JETS3_LISTING_SIZES="$${JETS3_LISTING_SIZES:-1000 1000000 10000000}" bash scripts/bench-listing.sh

bench-quick:
	bash scripts/bench.sh quick

# NATS-cluster faults with the figures of RELIABILITY.md: ten kills of the stream leader's
# node, a frozen node, a lost quorum, full storage; then a 30-minute soak with its curves.
bench-faults:
	bash scripts/tools.sh nats
	JETS3_FAULT_ROUNDS=10 $(CARGO) test -p jets3-gateway --test s3 failover:: -- --nocapture --test-threads 1

bench-soak:
	bash scripts/tools.sh nats
	JETS3_SOAK_SECONDS=1800 JETS3_SOAK_OUT=$(CURDIR)/bench/results/soak-$$(date +%F).csv \
		$(CARGO) test -p jets3-gateway --test s3 soak -- --nocapture

# Lingering bytes after overwrites and the collector's pass time (BENCHMARKS.md).
bench-lifecycle:
	bash scripts/tools.sh nats
	$(CARGO) run --release -p jets3-gateway --example lifecycle_bench

# Buckets of many objects seeded through NATS: time to the first page, RSS, page latency, warm
# starts from listing snapshots (BENCHMARKS.md). JETS3_LISTING_SIZES="100000 1000000 10000000".
bench-listing:
	bash scripts/bench-listing.sh
