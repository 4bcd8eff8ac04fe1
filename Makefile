# Thin wrapper over CMake. `make` builds, `make test` builds and runs every test, `make demo` runs the
# main job on the bundled tiny model, `make asan` builds and runs the fast tests under ASan+UBSan,
# `make ubsan` the same under clang's UBSan alone (every undefined behaviour fatal), `make fuzz` builds the
# libFuzzer targets (clang) and runs each for a few seconds on its seed corpus.
# ./build.sh installs the build tools first when they are missing.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD ?= build
ASAN_BUILD ?= build-asan
UBSAN_BUILD ?= build-ubsan
FUZZ_BUILD ?= build-fuzz
CLANG ?= clang
FUZZ_SECONDS ?= 5

.PHONY: all build test test-cuda asan ubsan fuzz demo clean

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
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLB_SANITIZE=ON -DLOWBIT_CUDA=OFF >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) -LE 'slow|cuda'

ubsan:
	@CC=$(CLANG) cmake -S . -B $(UBSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLB_UBSAN=ON -DLOWBIT_CUDA=OFF >/dev/null
	@cmake --build $(UBSAN_BUILD) -j $(JOBS)
	cd $(UBSAN_BUILD) && UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS) -LE slow

fuzz:
	@CC=$(CLANG) cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLB_FUZZ=ON -DLOWBIT_CUDA=OFF -DLB_FUZZ_SECONDS=$(FUZZ_SECONDS) >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	cd $(FUZZ_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

demo: build
	./$(BUILD)/lowbit quantize models/tiny -o $(BUILD)/tiny-q4_k_m.gguf --type q4_k_m
	./$(BUILD)/lowbit eval $(BUILD)/tiny-q4_k_m.gguf --base models/tiny --text tests/golden/data/valid.txt --chunks 10
	./$(BUILD)/lowbit run $(BUILD)/tiny-q4_k_m.gguf -p "The kernel" -n 48

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(UBSAN_BUILD) $(FUZZ_BUILD)
