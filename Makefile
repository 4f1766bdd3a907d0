# sealgate — build, test and CI entry points. `make help` lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO ?= go
# Pinned test tools (containerd, crictl, cosign) are installed here by `make tools`
# and found first by tests and targets.
TOOLS_BIN := $(CURDIR)/.tools/bin
export PATH := $(TOOLS_BIN):$(PATH)

TEST_TIMEOUT ?= 20m
INTEGRATION_TIMEOUT ?= 30m
FUZZTIME ?= 30s
FUZZPKGS ?= ./...
# Extra flags for go test, e.g. GOTESTFLAGS=-v or GOTESTFLAGS='-run TestX'.
GOTESTFLAGS ?=

# With tools installed, a test must not skip for lack of one: make it fail.
REQUIRE_TOOLS := SEALGATE_REQUIRE_TOOLS=1

.PHONY: help build tools test unit integration demo bench fuzz lint clean clean-tools unit-run integration-run

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/sealgate, the daemon binary bin/sealgate-daemon and the runtime gate bin/sealgate-runc, static, without cgo
	CGO_ENABLED=0 $(GO) build -buildvcs=true -o bin/sealgate ./cmd/sealgate
	CGO_ENABLED=0 $(GO) build -buildvcs=true -o bin/sealgate-daemon ./cmd/sealgate-daemon
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags=-s -o bin/sealgate-runc ./cmd/sealgate-runc

tools: ## install runc, busybox-static, swtpm, tpm2-tools, conmon (apt) and pinned containerd, crictl, cosign, CRI-O into .tools/bin
	bash hack/install-tools.sh

# Both suites run even when the first fails, so one CI run reports both.
test: tools ## all tests: unit tests, then integration tests against real containerd, CRI-O, runc, cosign
	@rc=0; \
	$(MAKE) --no-print-directory unit-run || rc=1; \
	$(MAKE) --no-print-directory integration-run || rc=1; \
	exit $$rc

unit: tools ## unit tests only (go test ./...)
	@$(MAKE) --no-print-directory unit-run

integration: tools ## integration tests only (-tags integration ./integration/...)
	@$(MAKE) --no-print-directory integration-run

unit-run:
	$(REQUIRE_TOOLS) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(GOTESTFLAGS) ./...

integration-run:
	$(REQUIRE_TOOLS) $(GO) test -count=1 -p 1 -timeout $(INTEGRATION_TIMEOUT) -tags integration $(GOTESTFLAGS) ./integration/...

demo: tools ## run the end-to-end demo (integration/demo)
	$(GO) run ./integration/demo

bench: ## benchmarks of every package, then the load driver (hack/loaddriver): sealgate beside a null NRI plugin
	$(GO) test -run '^$$' -bench . -benchmem ./...
	CGO_ENABLED=0 $(GO) build -o bin/sealgate ./cmd/sealgate
	CGO_ENABLED=0 $(GO) build -o bin/sealgate-daemon ./cmd/sealgate-daemon
	CGO_ENABLED=0 $(GO) build -o bin/nullplugin ./hack/nullplugin
	$(GO) run ./hack/loaddriver --images 40 --rounds 100 --repeats 7 --json bin/load-loopback.json
	$(GO) run ./hack/loaddriver --images 40 --rounds 10 --repeats 3 --latency 20ms --json bin/load-20ms.json
	$(GO) run ./hack/loaddriver --images 1000 --rounds 0 --repeats 1 --parallel 8 --referrers on --json bin/load-1000-cold.json
	$(GO) run ./hack/loaddriver --images 10000 --rounds 1 --repeats 1 --parallel 4 --referrers on --json bin/load-10000.json

fuzz: ## run every fuzz target of FUZZPKGS (default ./...) for FUZZTIME (default 30s) each
	@pkgs=$$($(GO) list $(FUZZPKGS)); \
	for pkg in $$pkgs; do \
		list=$$($(GO) test -list '^Fuzz' "$$pkg"); \
		for target in $$(grep '^Fuzz' <<<"$$list" || true); do \
			echo "fuzz: $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s "$$pkg"; \
		done; \
	done

lint: ## gofmt, go vet (with and without the integration tag)
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./integration/...

clean: ## remove build outputs (keeps .tools/bin: see clean-tools)
	rm -rf bin/ .tools/build/

clean-tools: ## remove the installed tools, so that `make tools` rebuilds them
	rm -rf .tools/
