# kube-natd: `make demo` and `make test` work on a fresh Debian machine as root.
SHELL := /bin/bash
SWIFT ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
DEBIAN_PACKAGES := libiptc-dev libnftnl-dev libnetfilter-conntrack-dev libmnl-dev iptables nftables conntrack iproute2 ipset pkg-config curl python3 systemd valgrind
BIN_DEBUG := .build/debug/kube-natd
BIN_RELEASE := .build/release/kube-natd

.PHONY: deps build release test unit-test kernel-test test-tsan soak soak-short demo bench bench-latency clean

## deps: install the Debian packages the build and the tests need (apt-get only when something is missing)
deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

## test: unit, golden and tracer tests (swift test), the daemon and source tests again under ThreadSanitizer, the CLI
## contract, the Debian package and DaemonSet checks, the kernel tests in network namespaces (root), and a short soak
## (Tests/run-all.sh): every suite runs even when one fails; one line per suite, then
## `make test: N passed, M failed, K skipped`, non-zero when anything failed
test: deps
	SWIFT="$(SWIFT)" MAKE="$(MAKE)" BIN="$(BIN_DEBUG)" bash Tests/run-all.sh

## test-tsan: the daemon and source tests built with ThreadSanitizer (own build folder); any report fails
test-tsan: deps
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	TSAN_OPTIONS=halt_on_error=1 $(SWIFT) test --skip-build --sanitize=thread --scratch-path .build-tsan \
		--filter 'DaemonTests|KubeSourceTests'

unit-test: deps
	$(SWIFT) test

kernel-test: build
	bash Tests/kernel/run.sh $(BIN_DEBUG)

## soak: the daemon against the test apiserver under seeded churn and faults, 10k Services, 10 minutes per kernel
## backend (SOAK_S, SOAK_SEED, SOAK_SERVICES, SOAK_BACKENDS, SOAK_RATE); report in bench-results/soak-*.json
soak: release
	bash Tests/soak/run.sh $(dir $(BIN_RELEASE))

## soak-short: the same for 40 s per backend at 1k Services (part of make test); its report stays out of the tree
soak-short: build
	report=$$(mktemp -d /tmp/knat-soak-report.XXXXXX); \
	SOAK_S=40 SOAK_SERVICES=1000 SOAK_OUT=$$report bash Tests/soak/run.sh $(dir $(BIN_DEBUG)); rc=$$?; \
	rm -rf $$report; exit $$rc

## demo: build, then program the bundled example cluster in namespaces it creates and removes
demo: build
	bash Config/demo.sh $(BIN_DEBUG)

## bench: kube-natd vs iptables-legacy-restore at 1k/10k/30k Services (release build)
bench: release
	bash Benchmarks/run.sh $(BIN_RELEASE)

## bench-latency: one EndpointSlice change timed by traffic (the first new connection the new endpoint answers) at
## LATENCY_SIZES Services on nf_tables, beside kube-natd's own time and the kernel's commit (release build;
## Benchmarks/latency.sh: SAMPLES, BACKEND); report in bench-results/latency-*.json
LATENCY_SIZES ?= 5000 10000 30000
bench-latency: release
	bash Benchmarks/latency.sh $(BIN_RELEASE) "$(LATENCY_SIZES)"

## deb-deps: what building and checking the Debian package needs beyond `make deps` (lintian, dpkg-shlibdeps,
## strip, PyYAML for the manifest check)
DEB_DEBIAN_PACKAGES := lintian dpkg-dev binutils python3-yaml
DEB_DIR := .build/deb
.PHONY: deb-deps release-static deb package-test
deb-deps:
	@missing=""; for p in $(DEB_DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

## release-static: the release binary with the Swift runtime and Foundation linked in (what the package ships)
release-static: deps
	$(SWIFT) build -c release --static-swift-stdlib --product kube-natd

## deb: the Debian package, in .build/deb/ (packaging/build-deb.sh; lintian-clean)
deb: release-static deb-deps
	bash packaging/build-deb.sh $(BIN_RELEASE) $(DEB_DIR)

## package-test: the package built from the static release binary and checked unpacked in a scratch root (its
## dry run compared with the debug build's), and Config/kube-natd-daemonset.yaml against the bundled Kubernetes
## schema (part of make test)
package-test: release-static build deb-deps
	bash Tests/package/deb.sh $(BIN_RELEASE) $(BIN_DEBUG)
	bash Tests/package/manifest.sh $(BIN_RELEASE)

clean:
	rm -rf .build
