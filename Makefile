# onnx-tl top-level Makefile: the two commands of the README.
#   make demo   install what is missing, build, run the demo on the bundled model
#   make test   install what is missing (build and test dependencies), build, run every test
# Installation needs root with apt-get; otherwise the exact apt-get line is printed and make stops.

BUILD      ?= build
FUZZ_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PYTHON     := /usr/bin/python3
ONNX_TL    := $(BUILD)/onnx-tl

# Debian 12 packages: to build, and additionally to test
BUILD_PKGS := cmake make gcc pkg-config libprotobuf-c-dev protobuf-c-compiler libonnx-dev \
              libdnnl-dev libopenblas-dev zlib1g-dev libstb-dev libpng-dev libjpeg-dev
DEMO_PKGS  := dataset-fashion-mnist
TEST_PKGS  := clang libclang-rt-14-dev libonnx-testdata python3-onnx python3-torch \
              python3-torchvision python3-numpy dataset-fashion-mnist valgrind

.PHONY: all build demo test deps test-deps ort asan-test fuzz clean distclean

all: build

deps:
	@sh tools/ensure-packages.sh $(BUILD_PKGS)

test-deps: deps
	@sh tools/ensure-packages.sh $(TEST_PKGS)
	@sh tools/ensure-node.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DOTL_WERROR=ON

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

ort: test-deps
	@cd tests/ort && if [ ! -d node_modules/onnxruntime-node ]; then \
	  ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --no-audit --no-fund --ignore-scripts; fi

demo: build
	@sh tools/ensure-packages.sh $(DEMO_PKGS)
	sh tools/demo.sh $(ONNX_TL)

# Main suite (release build), then the sanitizer build with the fuzz run and the
# malformed-input corpus under ASan+UBSan.
test: test-deps ort build asan-test
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) || { sh $(CURDIR)/tools/ctest-failures.sh .; exit 1; }

$(FUZZ_BUILD)/CMakeCache.txt:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DOTL_SANITIZE=ON -DOTL_FUZZ=ON

asan-test: test-deps $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j$(JOBS)
	cd $(FUZZ_BUILD) && ctest --output-on-failure -j$(JOBS) -L asan || { sh $(CURDIR)/tools/ctest-failures.sh .; exit 1; }

# Longer fuzzing (opt-in): every libFuzzer target for FUZZ_SECONDS each (make test runs 15 s each);
# findings are written to $(FUZZ_BUILD)/fuzz_long_<target>/artifacts.
FUZZ_SECONDS ?= 300
FUZZ_SEEDS   := tests/fuzz/seed_run:tests/fuzz/seed:tests/fuzz/found
fuzz: test-deps $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j$(JOBS)
	for t in load info run; do \
	  OMP_NUM_THREADS=1 ASAN_OPTIONS=allocator_may_return_null=1 cmake -DFUZZER=$(FUZZ_BUILD)/tests/fuzz_$$t \
	    -DSEEDS=$(FUZZ_SEEDS) -DDICT=tests/fuzz/onnx.dict -DWORK=$(FUZZ_BUILD)/fuzz_long_$$t \
	    -DSECONDS=$(FUZZ_SECONDS) -P tests/fuzz/run_fuzz.cmake || exit 1; \
	done

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD)

distclean: clean
	rm -rf tests/ort/node_modules
