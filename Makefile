# Edge Factory. `make run` starts a one-node factory on the synthetic Talos release; `make test` runs every suite
# this machine can run (the boot and netns suites skip, saying why, where they cannot).

GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# Longest single package run (the boot suite builds and boots in QEMU under TCG).
TIMEOUT  ?= 40m

export EDGEFACTORY_BUILD_DIR ?= $(CURDIR)/build
export EDGEFACTORY_PARTS ?= $(EDGEFACTORY_BUILD_DIR)/parts
export EDGEFACTORY_MKSQUASHFS ?= $(EDGEFACTORY_BUILD_DIR)/hosttools/squashfs-tools/usr/bin/mksquashfs

# Test output goes through scripts/testlog, which prints it as go test does and records each suite (what ran, what
# skipped and why) under build/test-record for the summary CI ends with (.ci/run). pipefail keeps go test's status.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
TESTLOG = $(GO) run ./scripts/testlog

.PHONY: all build deps run test test-unit test-ui test-boot test-netns test-netboot test-fuzz soak bench bench-serving bench-netns bench-netboot lint clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/edgefactory ./cmd/edgefactory

# Host tools for the Talos imager and the parts of the synthetic release (Debian packages, downloaded once).
deps:
	./scripts/deps.sh

run: deps build
	./bin/edgefactory dev

test: test-unit test-ui test-boot test-netns test-fuzz

test-unit:
	$(GO) test -json -timeout $(TIMEOUT) ./... | $(TESTLOG) record test-unit

# The web wizard walked in headless Chromium (chromedp; Debian's chromium from make deps), axe-core on every page.
# Screenshots are test artifacts (under _artifacts/); EDGEFACTORY_UPDATE_SCREENSHOTS=1 refreshes docs/ui-*.png.
test-ui:
	mkdir -p $(CURDIR)/build/ui-artifacts
	$(GO) test -json -count=1 -timeout $(TIMEOUT) -tags ui -artifacts -outputdir $(CURDIR)/build/ui-artifacts -v ./e2e/ui/ \
		| $(TESTLOG) record -v test-ui

test-boot:
	$(GO) test -json -timeout $(TIMEOUT) -tags boot -run 'TestBoot' -v ./e2e/boot/ | $(TESTLOG) record -v test-boot

test-netns:
	$(GO) test -json -count=1 -timeout $(TIMEOUT) -tags netns -run 'TestNetns' -v ./e2e/netns/ \
		| $(TESTLOG) record -v test-netns

# The network-boot lab alone (part of test-netns): QEMU guests PXE- and HTTP-boot on the lab's bridge from a site's
# own dnsmasq + TFTP + nginx and from Edge Factory members (root, qemu, dnsmasq, OVMF, ipxe-qemu, make deps).
test-netboot:
	$(GO) test -count=1 -timeout $(TIMEOUT) -tags netns -run 'TestNetnsNetboot' -v ./e2e/netns/

# The linearizability check of test-netns (TestNetnsLinearizable: schematic and settings operations through every
# member while members are killed, restarted and cut off, checked with porcupine) for longer: the faults repeat until
# the clients have made SOAK_OPS operations (test-netns: 1,000). Root; about 3 minutes per 10,000 operations.
SOAK_OPS ?= 10000

soak:
	EDGEFACTORY_SOAK_OPS=$(SOAK_OPS) $(GO) test -count=1 -timeout $(TIMEOUT) -tags netns -run 'TestNetnsLinearizable' \
		-v ./e2e/netns/

# Fuzzing: every target for $(FUZZTIME) (the issue's CI bound is 60 s each), two at a time with a worker each
# (scripts/fuzz.sh lists them). Their seed corpora (f.Add and testdata/fuzz/<Name>/) also run as plain tests in
# test-unit. docs/testing.md says what each one checks.
FUZZTIME ?= 60s

test-fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Serving benchmarks only (e2e/bench): Edge Factory vs nginx on the same bytes, and memory under parallel
# downloads. Needs `make deps`; about 4 minutes.
bench-serving:
	$(GO) test -run '^$$' -bench . -benchtime 10s -timeout 60m ./e2e/bench/

# Cluster downloads over links with a line rate (root; network namespaces with tc): the first download through a
# node that holds nothing against a download from the owner. EDGEFACTORY_BENCH_LINK sets the rate (default 1gbit).
bench-netns:
	$(GO) test -run '^$$' -tags netns -bench . -benchtime 3x -timeout 30m ./e2e/netns/

# Network boot, DHCPDISCOVER to kernel, of one BIOS guest: Edge Factory members against a site's own dnsmasq + TFTP
# + nginx serving the same files (root, QEMU under TCG: about 8 minutes at 3 boots a side).
bench-netboot:
	$(GO) test -run '^$$' -tags netns -bench NetnsNetboot -benchtime 3x -timeout 30m ./e2e/netns/

# golangci-lint (pinned and built by `make deps` into build/tools; configuration in .golangci.yml): gofmt, goimports,
# vet, and the linters the code's //nolint comments answer to.
GOLANGCI_LINT ?= $(EDGEFACTORY_BUILD_DIR)/tools/golangci-lint

lint:
	@test -x $(GOLANGCI_LINT) || { echo "lint: $(GOLANGCI_LINT) missing: run make deps"; exit 1; }
	$(GOLANGCI_LINT) run ./...

clean:
	rm -rf bin
