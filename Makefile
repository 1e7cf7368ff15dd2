# A thin front for CMake. `make demo` and `make test` install what is missing first.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build test unit demo bench asan fuzz clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

unit: build
	@cd $(BUILD) && ctest --output-on-failure -L unit -j $(JOBS)

demo: build
	@scripts/demo.sh $(BUILD)/rivulet

bench: build
	@bench/create.sh $(BUILD)/rivulet

asan:
	@scripts/deps.sh
	@cmake -S . -B build-asan -DRV_SANITIZE=ON -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@cd build-asan && ctest --output-on-failure -L unit -j $(JOBS)
	@# the adversarial suite too: hostile peers against the sanitized binary (ASan's shadow
	@# memory counts in the RSS the suite bounds, so the bound is raised)
	@cd build-asan && RV_RSS_LIMIT_KIB=1048576 ctest --output-on-failure -L adversarial

fuzz:
	@scripts/deps.sh
	@cmake -S . -B build-fuzz -DRV_FUZZ=ON -DRV_TESTS=OFF -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRV_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-fuzz -j $(JOBS)
	@scripts/fuzz.sh build-fuzz $${FUZZ_SECONDS:-60}

clean:
	rm -rf $(BUILD) build-asan build-fuzz
