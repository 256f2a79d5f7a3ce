# jets3: the commands a person runs. The scripts in scripts/ do the work.
SHELL := /usr/bin/env bash
CARGO ?= cargo

.PHONY: help tools dev test lint build e2e-kind

help:
	@echo "make dev     run nats-server + jets3-gateway locally with a demo bucket (Ctrl-C stops)"
	@echo "make test    install test tools, then fmt, clippy, cargo test, release build, client suite"
	@echo "make tools   install the pinned third-party tools into \$${JETS3_TOOLS_DIR:-~/.cache/jets3}"
	@echo "make lint    cargo fmt --check and clippy -D warnings"
	@echo "make build   cargo build --release -p jets3-gateway"
	@echo "make e2e-kind  kind cluster + images + helm install + S3 round trip (needs Docker, kind, kubectl)"

tools:
	bash scripts/tools.sh

dev:
	bash scripts/dev.sh

test:
	bash scripts/test.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build:
	$(CARGO) build --release -p jets3-gateway

e2e-kind:
	bash e2e/kind/e2e.sh
