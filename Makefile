# cke-rs: `make test` runs every test; `make demo` brings up a local cluster.
CARGO ?= cargo

.PHONY: all build test deps lint demo demo-down clean

all: build

# The test suites need the daemon's test hooks (--test-operator, failpoints); release builds have none.
FEATURES ?= --features test-hooks

build:
	$(CARGO) build --workspace --all-targets $(FEATURES)

deps:
	./scripts/install-test-deps.sh

test: deps
	$(CARGO) build --workspace --all-targets $(FEATURES)
	$(CARGO) test --workspace --all-targets $(FEATURES) --no-fail-fast -- --test-threads=4

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets $(FEATURES) -- -D warnings

demo: deps build
	./scripts/demo.sh

demo-down:
	./scripts/demo.sh down

clean:
	$(CARGO) clean

.PHONY: bench
bench: deps
	$(CARGO) test --release --test bench_probe -- --ignored --nocapture
