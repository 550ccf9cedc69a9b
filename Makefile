# mcpauth — make targets. `make run` starts it, `make test` tests it.
GO      ?= go
BIN     := bin/mcpauth
GOFILES  = $(shell git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.mcpauth/*')

.PHONY: all build run test lint fmt clean

all: lint build test

## build: compile bin/mcpauth
build:
	$(GO) build -trimpath -o $(BIN) ./cmd/mcpauth

## run: start mcpauth with zero configuration on http://localhost:8080
##      (a private PostgreSQL cluster and a secret under ./.mcpauth/, kept between runs)
run: build
	./$(BIN) dev

## test: every test, against a throwaway PostgreSQL cluster the tests start
test:
	$(GO) test -race -count=1 -timeout 20m ./...

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
