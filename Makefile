# Thin wrapper over CMake. `make` builds, `make test` builds and runs every test, `make demo` runs the
# main job on the bundled tiny model, `make asan` builds and runs the fast tests under ASan+UBSan.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD ?= build
ASAN_BUILD ?= build-asan

.PHONY: all build test asan demo clean deps

all: build

deps:
	@command -v cmake >/dev/null && command -v cc >/dev/null || \
	  (echo "installing build tools (cmake, gcc, make)"; \
	   $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	   $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq cmake gcc make)

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLB_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) -LE slow

demo: build
	./$(BUILD)/lowbit inspect models/tiny
	./$(BUILD)/lowbit eval models/tiny --text tests/golden/data/valid-head.txt --chunks 4
	./$(BUILD)/lowbit run models/tiny -p "The kernel" -n 48

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
