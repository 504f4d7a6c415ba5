# Usual targets; .ci/run is what CI runs and calls the same commands.
BUF := go run github.com/bufbuild/buf/cmd/buf@v1.75.0

.PHONY: all generate lint breaking test test-race fuzz build tools

all: generate lint test

generate:
	$(BUF) generate

lint:
	$(BUF) lint
	go vet ./...

breaking:
	$(BUF) breaking --against '.git#ref=HEAD~1'

test:
	go test ./...

test-race:
	go test -race ./...

# Short fuzzing of every parser of outside input; FUZZTIME=5m for longer runs.
FUZZTIME ?= 10s
fuzz:
	./.ci/fuzz $(FUZZTIME)

build:
	CGO_ENABLED=0 go build -o bin/ ./cmd/...

# Tools the end-to-end tests use when present (CI installs them).
tools:
	go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
	go install github.com/grpc-ecosystem/grpc-health-probe@v0.4.62
