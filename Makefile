# Thin wrapper over CMake. `make` builds, `make test` builds and runs every test, `make demo` runs the
# main job on the bundled tiny model, `make asan` builds and runs the fast tests under ASan+UBSan.
# ./build.sh installs the build tools first when they are missing.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD ?= build
ASAN_BUILD ?= build-asan

.PHONY: all build test test-cuda asan demo clean

all: build

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(if $(LB_PYTHON),-DLB_PYTHON=$(LB_PYTHON)) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# GPU tests (label cuda) need an NVIDIA GPU: `make test` leaves them out, `make test-cuda` runs them.
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE cuda

test-cuda: build
	cd $(BUILD) && ctest --output-on-failure -L cuda

asan:
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLB_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) -LE 'slow|cuda'

demo: build
	./$(BUILD)/lowbit quantize models/tiny -o $(BUILD)/tiny-q4_k_m.gguf --type q4_k_m
	./$(BUILD)/lowbit eval $(BUILD)/tiny-q4_k_m.gguf --base models/tiny --text tests/golden/data/valid.txt --chunks 10
	./$(BUILD)/lowbit run $(BUILD)/tiny-q4_k_m.gguf -p "The kernel" -n 48

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
