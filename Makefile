# fpmguard: build, test, benchmark and demo.
GO        ?= go
# The Go toolchain of every target, pinned exactly so that every machine
# builds, tests and checks with the same one: go1.26.8 (the go line of go.mod)
# has 13 known vulnerabilities in its standard library, fixed by go1.26.10.
# The go command downloads it through the module proxy when it is missing.
# Keep it equal to go.mod's toolchain line and .ci/vulncheck's default.
export GOTOOLCHAIN := go1.26.10
BIN       := bin/fpmguard
# A static binary: no libc needed where it runs.
# The version of the binary, the packages and the image: git describe
# (packaging/version.sh says how, and how a .deb and an .rpm spell it).
VERSION   ?= $(shell packaging/version.sh)
# The commit, for fpmguard_build_info's revision and the image's label.
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X github.com/prometheus/common/version.Revision=$(REVISION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build deps test lint vulncheck bench bench-scenario bench-scale demo soak clean package image test-package package-deps

# The chaos soak's length: make soak SOAK=10m.
SOAK ?= 60s
# The scale table of make bench: pool counts, seconds per window, runs.
SCALE_POOLS ?= 10,100,1000
SCALE_SECONDS ?= 60
SCALE_RUNS ?= 3
# Runs of each mode of the nginx scenario.
SCENARIO_RUNS ?= 3
# BASELINE names a git ref (main, a commit) built and measured beside the
# working tree, in the same runs, by the scenario and the scale table;
# empty for none.
BASELINE ?=
# with-baseline runs a command with $$base set to a binary built from
# BASELINE (empty without it), in a git worktree removed afterwards.
with-baseline = base=""; tmp=$$(mktemp -d); trap 'git worktree remove --force "$$tmp/src" 2>/dev/null; rm -rf "$$tmp"' EXIT; \
	if [ -n "$(BASELINE)" ]; then \
		git worktree add --detach "$$tmp/src" "$(BASELINE)" >/dev/null && \
		(cd "$$tmp/src" && $(GO) build -ldflags "-X main.version=$$(git describe --tags --always)" -o "$$tmp/fpmguard" ./cmd/fpmguard) && base="$$tmp/fpmguard" || exit 1; \
	fi;

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/fpmguard

# php-fpm with opcache and nginx, from the distribution's packages, when
# missing; then the roots of the other PHP versions the tests run, built
# once and cached (.ci/rootfs).
deps:
	./.ci/install-deps

# gofmt of GOTOOLCHAIN's Go, not the one on PATH.
lint:
	@gofmt="$$($(GO) env GOROOT)/bin/gofmt"; files=$$($$gofmt -l $$(git ls-files '*.go')) || exit 1; \
		test -z "$$files" || { echo "$$files"; echo "gofmt: run gofmt -w on the files above"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# govulncheck, offline, against a database built from the vulndb module: it
# fails on any vulnerable function that fpmguard calls, in the standard
# library too.
vulncheck:
	./.ci/vulncheck

# Every test, integration tests against a real php-fpm included. They fail,
# not skip, when php-fpm is missing. The integration families run against
# every PHP version of fastcgi/fpmtest's matrix (8.2 on the host, 7.4 and
# 8.4 in the roots deps builds); the first line says which php-fpm each is.
# cmd/fpmguard's tests take about 10 minutes of a quiet 2-core machine, 15
# on a loaded one: the timeout leaves room for more.
test: deps lint vulncheck
	@out=$$(FPMGUARD_INTEGRATION=require $(GO) test -count=1 -run '^TestStartEachVersion$$' -v ./fastcgi/fpmtest/ 2>&1); status=$$?; \
		if [ $$status -ne 0 ]; then echo "$$out"; exit $$status; fi; \
		echo "$$out" | sed -n 's/.*\(php-fpm matrix: .*\)/\1/p'
	FPMGUARD_INTEGRATION=require $(GO) test -race -count=1 -timeout 30m ./...
	FPMGUARD_INTEGRATION=require SOAK=60s $(GO) test -count=1 -timeout 10m -run '^TestSoak$$' -v ./cmd/fpmguard/

# The chaos soak alone, SOAK long (60s by default).
soak: deps
	FPMGUARD_INTEGRATION=require SOAK=$(SOAK) $(GO) test -count=1 -timeout 0 -run '^TestSoak$$' -v ./cmd/fpmguard/

# The Go benchmarks of every package (6 runs each, for benchstat medians),
# then the end-to-end scenario through nginx and the scale table.
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./... > bench.out; status=$$?; cat bench.out; exit $$status
	$(MAKE) --no-print-directory bench-scenario bench-scale

# The end-to-end scenario through nginx: hung workers with nothing acting,
# with fpmguard (at --interval 1s and 5s; BASELINE's too when set), and with
# php-fpm's request_terminate_timeout. SCENARIO_RUNS runs of each.
bench-scenario: deps
	@$(with-baseline) FPMGUARD_SCENARIO=1 FPMGUARD_SCENARIO_BASELINE="$$base" $(GO) test -run '^$$' -bench BenchmarkRecovery -benchtime 1x -count $(SCENARIO_RUNS) ./cmd/fpmguard/ > bench-scenario.out; status=$$?; cat bench-scenario.out; exit $$status
	@echo
	@echo "4 workers hung for 20 s behind nginx (fastcgi_read_timeout 10s), a normal request every 100 ms; fpmguard's --kill-hung-after and php-fpm's request_terminate_timeout 3s:"
	@awk '/^BenchmarkRecovery\// { split($$1, n, "/"); sub(/-[0-9]+$$/, "", n[2]); line = sprintf("  %-28s", n[2]); \
		for (i = 3; i < NF; i += 2) if ($$(i + 1) != "ns/op") line = line sprintf("  %s %s", $$(i + 1), $$i); print line }' bench-scenario.out

# The scale table: serve's cost at SCALE_POOLS pools, static and ondemand,
# with and without pm.status_listen, beside BASELINE when set.
bench-scale: deps
	@$(with-baseline) \
	FPMGUARD_SCALE=$(SCALE_POOLS) SCALE_SECONDS=$(SCALE_SECONDS) SCALE_RUNS=$(SCALE_RUNS) FPMGUARD_SCALE_BASELINE="$$base" \
		$(GO) test -count=1 -timeout 0 -run '^TestScale$$' -v ./cmd/fpmguard/ > bench-scale.out; status=$$?; grep '^SCALE' bench-scale.out; exit $$status
	@echo
	@echo "serve --interval 1s, medians of $(SCALE_RUNS) runs of $(SCALE_SECONDS) s; php-fpm's CPU against the same pools without fpmguard:"
	@awk '/^SCALE / { for (i = 2; i <= NF; i++) { split($$i, kv, "="); v[kv[1]] = kv[2] } \
		printf "  %-8s %-8s %-8s %-6s %5s pools  %6s µs/pool-tick  %5s%% core  %5s MB (%s..%s)  scrape p50/p99 of %s %6s/%6s ms  php-fpm +%5s%% core  workers %s (without fpmguard %s)  all-hung pool judged %s s after --hung-after, without status_listen unhealthy %s s after the hang\n", \
		v["binary"], v["commit"], v["pm"], v["config"], v["pools"], v["cpu_per_pool_tick_us"], v["core_share_pct"], v["rss_mb"], v["rss_first_mb"], v["rss_max_mb"], v["scrapes"], v["scrape_p50_ms"], v["scrape_p99_ms"], \
		v["fpm_probe_cpu_pct"], v["workers"], v["baseline_workers"], v["listen_hung_judged_after_threshold_s"], v["plain_hung_unhealthy_s"] }' bench-scale.out

demo: deps build
	./examples/demo.sh

# The .deb and .rpm of each architecture, and their SHA256SUMS, in dist/.
# nfpm is a Go tool of its own module file (packaging/nfpm.mod), so its
# dependencies never change fpmguard's. Files dated at the commit: the
# same commit gives the same packages.
ARCHS     := amd64 arm64
DIST      := dist
STAGE     := bin/stage
NFPM      := $(GO) tool -modfile=packaging/nfpm.mod nfpm
PKG_VERSION = $(shell packaging/version.sh package $(VERSION))
export SOURCE_DATE_EPOCH := $(shell git log -1 --format=%ct 2>/dev/null || date +%s)

package: build
	@pkgver='$(PKG_VERSION)'; test -n "$$pkgver" || exit 1
	rm -rf $(DIST) $(STAGE) && mkdir -p $(DIST) $(STAGE)
	$(BIN) --help-man | gzip -9n > $(STAGE)/fpmguard.1.gz
	$(BIN) --completion-script-bash > $(STAGE)/fpmguard.bash
	$(BIN) --completion-script-zsh > $(STAGE)/_fpmguard
	printf 'fpmguard ($(PKG_VERSION)-1) unstable; urgency=medium\n\n  * fpmguard $(VERSION), built by make package from commit\n    $(REVISION).\n\n -- %s  %s\n' \
		"$$(sed -n 's/^maintainer: //p' packaging/nfpm.yaml)" "$$(date -u -R -d @$(SOURCE_DATE_EPOCH))" | gzip -9n > $(STAGE)/changelog.Debian.gz
	set -e; for arch in $(ARCHS); do \
		CGO_ENABLED=0 GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(STAGE)/$$arch/fpmguard ./cmd/fpmguard; \
		for format in deb rpm; do \
			ARCH=$$arch VERSION='$(PKG_VERSION)' STAGE=$(STAGE) $(NFPM) package --config packaging/nfpm.yaml --packager $$format --target $(DIST)/; \
		done; \
	done
	cd $(DIST) && sha256sum *.deb *.rpm > SHA256SUMS
	@ls -l $(DIST)

# The OCI image, FROM scratch, for this machine's architecture (IMAGE_ARCH
# for another), named $(IMAGE):$(VERSION) in buildah's storage. Dated at the
# commit, as the packages are.
IMAGE      ?= localhost/fpmguard
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
BUILDAH    := buildah --storage-driver vfs

image:
	rm -rf $(STAGE)/image && mkdir -p $(STAGE)/image/root/var/lib $(STAGE)/image/opcache
	CGO_ENABLED=0 GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(STAGE)/image/fpmguard ./cmd/fpmguard
	@# A build of the same version replaces the image, leaving no untagged one.
	-@$(BUILDAH) rmi $(IMAGE):$(VERSION) >/dev/null 2>&1
	$(BUILDAH) bud --isolation chroot --arch $(IMAGE_ARCH) --timestamp $(SOURCE_DATE_EPOCH) \
		--build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
		-f packaging/Containerfile -t $(IMAGE):$(VERSION) $(STAGE)/image
	@echo "image $(IMAGE):$(VERSION); export it with: $(BUILDAH) push $(IMAGE):$(VERSION) oci-archive:fpmguard.tar"

# The packages and the image, tested as a user installs them: lintian, the
# .deb installed into a clean Debian bookworm root with php8.2-fpm, the
# .rpm's files and scripts, the image exported and read back, one version
# in all. Needs root (chroot); .ci/package-deps installs the tools and
# makes the root, once.
test-package: package-deps package image
	FPMGUARD_PACKAGE=$(CURDIR)/$(DIST) FPMGUARD_VERSION=$(VERSION) FPMGUARD_REVISION=$(REVISION) \
		FPMGUARD_IMAGE=$(IMAGE):$(VERSION) FPMGUARD_PACKAGE_ROOT=$${FPMGUARD_ROOTFS:-/var/cache/fpmguard-test}/package-bookworm \
		$(GO) test -count=1 -timeout 20m -v ./packaging/

package-deps:
	./.ci/package-deps

clean:
	rm -rf bin dist bench.out bench-scenario.out bench-scale.out
