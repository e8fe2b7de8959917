# tideserve: the two commands a new user runs are `make run` and `make test`.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
MODEL ?= models/tideserve-tiny-zh
FORMAT_FILES = $(shell git ls-files '*.cc' '*.h' 2>/dev/null)

.PHONY: all deps build build-asan build-tsan test run format format-check bench clean

all: build

deps:
	@tools/install-deps.sh

build: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

build-asan: deps
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j $(JOBS)

# ThreadSanitizer: only the runtime (scheduler) tests, where the threads are.
build-tsan: deps
	@cmake --preset tsan >/dev/null
	@cmake --build --preset tsan -j $(JOBS) --target runtime_test

format:
	@clang-format -i $(FORMAT_FILES)

format-check: deps
	@clang-format --dry-run --Werror $(FORMAT_FILES) || \
	  { echo "format-check: run 'make format' to fix the files above" >&2; exit 1; }
	@echo "format-check: $(words $(FORMAT_FILES)) files formatted"

test: format-check build build-asan build-tsan
	@tools/setup-test-clients.sh
	@ctest --preset release -j $(JOBS)
	@ctest --preset asan -j $(JOBS)
	@TSAN_OPTIONS="halt_on_error=1" build/tsan/tests/runtime/runtime_test

run: build
	@build/release/tideserve serve --model $(MODEL)

# Engine (vs ONNX Runtime, PyTorch) and end-to-end (vs the FastAPI service) benchmarks; see
# docs/benchmarks.md. Takes ~20 minutes on 2 cores.
bench: build
	@bench/run.sh build/release

clean:
	rm -rf build
