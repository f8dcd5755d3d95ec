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
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build deps test lint vulncheck bench bench-scenario bench-scale demo soak clean

# The chaos soak's length: make soak SOAK=10m.
SOAK ?= 60s
# The scale table of make bench: pool counts, seconds per window, runs.
# SCALE_BASELINE names a git ref (main, a commit) built and measured in the
# same runs beside the working tree; empty for none.
SCALE_POOLS ?= 10,100,1000
SCALE_SECONDS ?= 60
SCALE_RUNS ?= 3
SCALE_BASELINE ?=

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/fpmguard

# php-fpm with opcache and nginx, from the distribution's packages, when missing.
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
# not skip, when php-fpm is missing.
test: deps lint vulncheck
	FPMGUARD_INTEGRATION=require $(GO) test -race -count=1 -timeout 20m ./...
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
# with fpmguard (at --interval 1s and 5s), and with php-fpm's
# request_terminate_timeout.
bench-scenario: deps
	FPMGUARD_SCENARIO=1 $(GO) test -run '^$$' -bench BenchmarkRecovery -benchtime 1x -count 1 ./cmd/fpmguard/ > bench-scenario.out; status=$$?; cat bench-scenario.out; exit $$status
	@echo
	@echo "4 workers hung for 20 s behind nginx (fastcgi_read_timeout 10s), a normal request every 100 ms; fpmguard's --kill-hung-after and php-fpm's request_terminate_timeout 3s:"
	@awk '/^BenchmarkRecovery\// { split($$1, n, "/"); sub(/-[0-9]+$$/, "", n[2]); line = sprintf("  %-28s", n[2]); \
		for (i = 3; i < NF; i += 2) if ($$(i + 1) != "ns/op") line = line sprintf("  %s %s", $$(i + 1), $$i); print line }' bench-scenario.out

# The scale table: serve's cost at SCALE_POOLS pools, static and ondemand,
# with and without pm.status_listen, beside SCALE_BASELINE when set.
bench-scale: deps
	@base=""; tmp=$$(mktemp -d); trap 'git worktree remove --force "$$tmp/src" 2>/dev/null; rm -rf "$$tmp"' EXIT; \
	if [ -n "$(SCALE_BASELINE)" ]; then \
		git worktree add --detach "$$tmp/src" "$(SCALE_BASELINE)" >/dev/null && \
		(cd "$$tmp/src" && $(GO) build -ldflags "-X main.version=$$(git describe --tags --always)" -o "$$tmp/fpmguard" ./cmd/fpmguard) && base="$$tmp/fpmguard" || exit 1; \
	fi; \
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

clean:
	rm -rf bin bench.out bench-scenario.out bench-scale.out
