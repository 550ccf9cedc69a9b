# mcpauth — make targets. `make run` starts it, `make test` tests it.
GO      ?= go
BIN     := bin/mcpauth
GOFILES  = $(shell git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.mcpauth/*')

CONFORMANCE := .ci/conformance/node_modules/.package-lock.json

.PHONY: all build run test bench bench-10m lint fmt clean conformance-tools

all: lint build test

## build: compile bin/mcpauth
build:
	$(GO) build -trimpath -o $(BIN) ./cmd/mcpauth

## run: start mcpauth with zero configuration on http://localhost:8080
##      (a private PostgreSQL cluster and a secret under ./.mcpauth/, kept between runs)
run: build
	./$(BIN) dev

## test: every test, against a throwaway PostgreSQL cluster the tests start
##       (and the MCP conformance suite, installed first)
test: conformance-tools
	$(GO) test -race -count=1 -timeout 20m ./...

## bench: measure the DESIGN §7 scenarios (median of 3 runs each; /mcp with
##        auth on and off interleaved; revocation latency between two
##        instances) against a throwaway PostgreSQL; prints a table, writes
##        bench-results/latest.json. Under 10 minutes.
BENCHFLAGS ?= -runs 3 -duration 6s -codes 5000 -revocations 100
bench: build
	$(GO) run ./cmd/mcpauth-bench -bin $(BIN) -json bench-results/latest.json $(BENCHFLAGS)

## bench-10m: make bench, then COPY 10 million rows into the token tables and
##            run the token scenarios again (DESIGN §7: within 80 %); about
##            15 minutes, so not part of make bench
bench-10m: build
	$(GO) run ./cmd/mcpauth-bench -bin $(BIN) -json bench-results/10m.json $(BENCHFLAGS) -seed-rows 10000000

## conformance-tools: install the pinned Node 22 and MCP conformance suite (npm)
conformance-tools: $(CONFORMANCE)

$(CONFORMANCE): .ci/conformance/package.json .ci/conformance/package-lock.json
	cd .ci/conformance && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## lint: gofmt check and go vet
lint:
	@unformatted="$$(gofmt -l $(GOFILES))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

## fmt: format every Go file
fmt:
	gofmt -w $(GOFILES)

clean:
	rm -rf bin
