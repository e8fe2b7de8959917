# tideserve: the two commands a new user runs are `make run` and `make test`.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
MODEL ?= models/tideserve-tiny-zh
FORMAT_FILES = $(shell git ls-files '*.cc' '*.h' 2>/dev/null)

.PHONY: all deps build build-asan build-tsan build-fuzz fuzz-run test run format format-check \
        bench fuzz clean

all: build

deps:
	@tools/install-deps.sh

build: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

build-asan: deps
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j $(JOBS)

# ThreadSanitizer: the runtime (scheduler, core service), HTTP server, API, tokenizer and batch
# store tests, and the binary for the load test with two IO threads and for the batch tests that
# run the jobs threads, the worker and the janitor together (flow, a worker killed or stopped,
# Redis restarted, cancel). The engine's OpenMP (libgomp is not instrumented) stays out: the
# tests use fakes or one engine thread.
TSAN_TESTS = runtime/runtime_test server/http_server_test server/server_unit_test text/text_test \
             plan/simulator_test jobs/batch_store_test
TSAN_BATCH_TESTS = FlowTest,KillWorkerTest,SigtermWorkerTest,RedisRestartTest,CancelTest
build-tsan: deps
	@cmake --preset tsan >/dev/null
	@cmake --build --preset tsan -j $(JOBS) --target $(notdir $(TSAN_TESTS)) tideserve

# libFuzzer targets (clang, ASan + UBSan), run from their seed corpora (fuzz/corpus, made by
# tools/make_fuzz_corpus.py) plus what earlier runs found (build/fuzz/corpus); every input in
# fuzz/regressions/<target>/ (crashes found before) runs first. A crash, leak, sanitizer report or
# timeout fails the run and leaves the input in build/fuzz/artifacts.
FUZZERS = tokenizer_fuzz loaders_fuzz model_directory_fuzz request_fuzz plan_inputs_fuzz
FUZZ_SECONDS ?= 30
build-fuzz: deps
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz -j $(JOBS) --target fuzzers

fuzz-run:
	@for f in $(FUZZERS); do \
	  mkdir -p build/fuzz/corpus/$$f build/fuzz/artifacts; \
	  if [ -d fuzz/regressions/$$f ]; then \
	    build/fuzz/fuzz/$$f -runs=0 fuzz/regressions/$$f/* >/dev/null 2>&1 || \
	      { echo "fuzz: $$f fails on a committed regression input" >&2; \
	        build/fuzz/fuzz/$$f -runs=0 fuzz/regressions/$$f/*; exit 1; }; \
	  fi; \
	  build/fuzz/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=25 \
	    -dict=fuzz/json.dict -artifact_prefix=build/fuzz/artifacts/$$f- -print_final_stats=1 \
	    build/fuzz/corpus/$$f fuzz/corpus/$$f > build/fuzz/$$f.log 2>&1 || \
	    { tail -60 build/fuzz/$$f.log >&2; echo "fuzz: $$f failed (build/fuzz/$$f.log)" >&2; exit 1; }; \
	  echo "fuzz: $$f $$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' build/fuzz/$$f.log)"; \
	done

format:
	@clang-format -i $(FORMAT_FILES)

format-check: deps
	@clang-format --dry-run --Werror $(FORMAT_FILES) || \
	  { echo "format-check: run 'make format' to fix the files above" >&2; exit 1; }
	@echo "format-check: $(words $(FORMAT_FILES)) files formatted"

test: format-check build build-asan build-tsan build-fuzz
	@tools/setup-test-clients.sh
	@ctest --preset release -j $(JOBS)
	@ctest --preset asan -j $(JOBS)
	@for t in $(TSAN_TESTS); do TSAN_OPTIONS="halt_on_error=1" build/tsan/tests/$$t || exit 1; done
	@TSAN_OPTIONS="halt_on_error=1" TIDESERVE_TEST_IO_THREADS=2 \
	  /usr/bin/python3 tests/integration/load_test.py build/tsan/tideserve
	@TSAN_OPTIONS="halt_on_error=1" /usr/bin/python3 tests/integration/batch_test.py \
	  build/tsan/tideserve --only $(TSAN_BATCH_TESTS)
	@$(MAKE) --no-print-directory fuzz-run FUZZ_SECONDS=30

run: build
	@build/release/tideserve serve --model $(MODEL)

# Engine (vs ONNX Runtime, PyTorch) and end-to-end (vs the FastAPI service) benchmarks; see
# docs/benchmarks.md. Takes ~20 minutes on 2 cores.
bench: build
	@bench/run.sh build/release

# The fuzz targets for longer: FUZZ_LONG_SECONDS each (default 10 minutes).
FUZZ_LONG_SECONDS ?= 600
fuzz: build-fuzz
	@$(MAKE) --no-print-directory fuzz-run FUZZ_SECONDS=$(FUZZ_LONG_SECONDS)

clean:
	rm -rf build
