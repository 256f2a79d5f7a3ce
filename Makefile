# jets3: the commands a person runs. The scripts in scripts/ do the work.
SHELL := /usr/bin/env bash
CARGO ?= cargo

.PHONY: help tools dev test lint build fuzz e2e-kind e2e-local

help:
	@echo "make dev     run nats-server + jets3-gateway locally with a demo bucket (Ctrl-C stops)"
	@echo "make test    install test tools, then fmt, clippy, cargo test, release build, client suite"
	@echo "make tools   install the pinned third-party tools (tests and benchmarks) into \$${JETS3_TOOLS_DIR:-~/.cache/jets3}"
	@echo "make bench-quick / make bench   jets3 side by side with nats-s3 and raw NATS (BENCHMARKS.md)"
	@echo "make bench-lifecycle   bytes that linger after overwrites, collector pass time (BENCHMARKS.md)"
	@echo "make bench-faults / make bench-soak   NATS-cluster faults and a 30-minute soak (RELIABILITY.md)"
	@echo "make lint    cargo fmt --check and clippy -D warnings"
	@echo "make build   cargo build --release -p jets3-gateway"
	@echo "make fuzz    every cargo-fuzz target for FUZZ_SECONDS (default 600) each (nightly)"
	@echo "make e2e-kind  kind cluster + images + helm install + S3 round trip (needs Docker, kind, kubectl)"
	@echo "make e2e-local the kind e2e's scenarios here: local kube-apiserver, helm install, operator + gateways as processes"

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
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

build:
	$(CARGO) build --release -p jets3-gateway

FUZZ_SECONDS ?= 600
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh

e2e-kind:
	bash e2e/kind/e2e.sh

e2e-local:
	$(CARGO) build -p jets3-operator
	$(CARGO) build --release -p jets3-gateway
	$${JETS3_TOOLS_DIR:-$$HOME/.cache/jets3}/venv/bin/python -m pytest -q e2e/local
# ---- side-by-side benchmark (BENCHMARKS.md) ------------------------------------------------------
.PHONY: tools-bench bench bench-quick bench-lifecycle bench-faults bench-soak

tools-bench:
	bash scripts/tools-bench.sh

bench:
	bash scripts/bench.sh full

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
