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

# ThreadSanitizer: the runtime (scheduler, core service), HTTP server, API and tokenizer tests,
# and the binary for the load test with two IO threads. The engine's OpenMP (libgomp is not
# instrumented) stays out: the tests use fakes or one engine thread.
TSAN_TESTS = runtime/runtime_test server/http_server_test server/server_unit_test text/text_test
build-tsan: deps
	@cmake --preset tsan >/dev/null
	@cmake --build --preset tsan -j $(JOBS) --target $(notdir $(TSAN_TESTS)) tideserve

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
	@for t in $(TSAN_TESTS); do TSAN_OPTIONS="halt_on_error=1" build/tsan/tests/$$t || exit 1; done
	@TSAN_OPTIONS="halt_on_error=1" TIDESERVE_TEST_IO_THREADS=2 \
	  /usr/bin/python3 tests/integration/load_test.py build/tsan/tideserve

run: build
	@build/release/tideserve serve --model $(MODEL)

# Engine (vs ONNX Runtime, PyTorch) and end-to-end (vs the FastAPI service) benchmarks; see
# docs/benchmarks.md. Takes ~20 minutes on 2 cores.
bench: build
	@bench/run.sh build/release

clean:
	rm -rf build
