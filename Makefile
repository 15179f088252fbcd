# cke-rs: `make test` runs every test; `make demo` brings up a local cluster.
CARGO ?= cargo

.PHONY: all build test test-k8s k8s deps lint demo demo-down clean

all: build

# The test suites need the daemon's test hooks (--test-operator, failpoints); release builds have none.
FEATURES ?= --features test-hooks

build:
	$(CARGO) build --workspace --all-targets $(FEATURES)

deps:
	./scripts/install-test-deps.sh

# Kubernetes 1.20.2 built from Debian's source package plus the local images (docs/k8s-testbed.md), cached
# in $(CKE_K8S_CACHE): ~8 min the first time on 2 cores, seconds after. .k8s.env holds CKE_K8S_BIN,
# CKE_K8S_IMAGE_TAR, CKE_PAUSE_IMAGE_TAR, CKE_BUSYBOX_IMAGE_TAR, CKE_UNBOUND_IMAGE_TAR,
# CKE_UNBOUND_EXPORTER_IMAGE_TAR (and the image names) for the tests.
export CKE_K8S_CACHE ?= /var/cache/cke-rs/k8s
K8S_ENV := .k8s.env

k8s: deps
	./scripts/build-k8s-images.sh > $(K8S_ENV).part
	sed 's/^/CKE_/' $(K8S_ENV).part > $(K8S_ENV)
	rm -f $(K8S_ENV).part
	@cat $(K8S_ENV)

# The suites run side by side (cargo-nextest, .config/nextest.toml: the real-Kubernetes and node-host
# suites in bounded groups); a summary of the slowest ones closes the output.
test: deps k8s
	$(CARGO) build --workspace --all-targets $(FEATURES)
	# Container cgroups killed node hosts left (docs/mtest.md): every kubelet would watch them.
	bash mtest/mtest.sh gc-cgroups
	set -a && . ./$(K8S_ENV) && set +a && $(CARGO) nextest run --workspace --all-targets $(FEATURES) --no-fail-fast

# Only the real-Kubernetes test bed check (also part of `make test`).
test-k8s: deps k8s
	set -a && . ./$(K8S_ENV) && set +a && $(CARGO) test $(FEATURES) --test k8s_testbed -- --nocapture

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets $(FEATURES) -- -D warnings

# Kubernetes on five local node hosts (scripts/demo.sh); needs root. A second run replaces the first.
demo: deps k8s build
	./scripts/demo.sh

demo-down:
	./scripts/demo.sh down

clean:
	$(CARGO) clean

.PHONY: bench
bench: deps
	$(CARGO) test --release --test bench_probe -- --ignored --nocapture

# The scale benchmark (not part of `make test`): N loopback nodes (CKE_BENCH_NODES, default 1000) behind
# one sshd on port 22, the release daemon, a real management etcd and OpenBao, all in a private network
# namespace (so port 22 and the loopback addresses are its own). Figures: docs/performance.md.
.PHONY: bench-scale
bench-scale: deps
	$(CARGO) test --release --test bench_scale --no-run
	unshare --net sh -c 'ip link set lo up && $(CARGO) test --release --offline --test bench_scale -- --ignored --nocapture'

# The chaos soak (docs/reliability.md): SOAK_MINUTES of faults (default 10), SOAK_SEED replays a schedule.
# Not part of `make test`. Needs root (mtest node hosts). Runs real Kubernetes and takes /tmp/cke-k8s-e2e.lock
# itself (SOAK_KUBERNETES=0: the managed etcd alone, no lock).
.PHONY: soak
SOAK_MINUTES ?= 10
soak: deps
	SOAK_MINUTES=$(SOAK_MINUTES) $(CARGO) test $(FEATURES) --test soak -- --ignored --nocapture

# Bounded fuzzing (tests/fuzz.rs, proptest: cargo-fuzz needs a nightly toolchain): each target for
# FUZZ_SECONDS (default 60), on the same (debug) build as `make test`. Failing cases are kept in
# tests/fuzz.proptest-regressions and replayed first.
.PHONY: fuzz
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(CARGO) test $(FEATURES) --test fuzz -- --nocapture
