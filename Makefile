# fpmguard: build, test, benchmark and demo.
GO        ?= go
BIN       := bin/fpmguard
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build deps test lint bench demo clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/fpmguard

# php-fpm with opcache and nginx, from the distribution's packages, when missing.
deps:
	./.ci/install-deps

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: run gofmt -w on the files above"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Every test, integration tests against a real php-fpm included. They fail,
# not skip, when php-fpm is missing.
test: deps lint
	FPMGUARD_INTEGRATION=require $(GO) test -race -count=1 -timeout 20m ./...

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./... | tee bench.out

demo: deps build
	./examples/demo.sh

clean:
	rm -rf bin bench.out
