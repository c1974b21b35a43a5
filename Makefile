# SPDX-License-Identifier: Apache-2.0
# A thin wrapper: CMake builds, CTest tests. `make check` is what CI runs.

DEMO_DIR ?= /var/tmp/coffer-demo
JOBS := $(shell nproc 2>/dev/null || echo 2)

.PHONY: deps build build-asan check fuzz soak valgrind demo bench clean

deps:
	scripts/install-deps.sh

build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build -j$(JOBS)

build-asan:
	cmake -S . -B build-asan -DCOFFER_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build build-asan -j$(JOBS)

check: deps
	scripts/check-rules.sh
	$(MAKE) build
	$(MAKE) build-asan
	ctest --test-dir build --output-on-failure -j2
	ctest --test-dir build-asan --output-on-failure -j2
	scripts/fuzz.sh check

# The long fuzzing campaign: FUZZ_SECONDS per target (default 600), corpus in build-fuzz/corpus.
fuzz: deps
	scripts/fuzz.sh campaign

# The soak: SOAK_SECONDS (default 600) of mixed load at 64 connections; fails on any
# unexpected answer or on memory still growing after the warm-up.
SOAK_SECONDS ?= 600
soak: deps build
	./build/api_bench $(SOAK_SECONDS) 0 soak 64

# The integration suite with its cofferd and coffer processes under valgrind memcheck.
valgrind: deps build
	scripts/valgrind.sh

demo: deps build
	./build/coffer demo $(DEMO_DIR)
	BUILD=./build scripts/demo-api.sh $(DEMO_DIR)

bench: build
	./build/core_bench
	./build/limit_bench
	./build/api_bench
	./build/api_bench 10 0 writes
	./build/api_bench 10 0 seal 64

clean:
	rm -rf build build-asan build-fuzz
