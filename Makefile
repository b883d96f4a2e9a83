# make demo  — install what is missing, build, run the built-in demo job
# make test  — the whole test suite (release build: the numerics are heavy), after test-consumer
# make test-portable — the suite on a build with the x86 SIMD kernels compiled out (not in `make
#              test`: a second full build, ~5 min on 2 cores)
# make bench — the fusion benchmarks; writes Benchmarks/results/latest.md
SWIFT ?= swift
# libopenblas-dev: only for qlora-bench (the OpenBLAS ceiling); the library links libomp alone.
DEPS := libopenblas-dev libomp-dev pkg-config
RELEASE := .build/release
# One flag set for every target so demo, test and bench share one build (tests use @testable).
BUILD := -c release -Xswiftc -enable-testing

.PHONY: deps build demo test test-consumer test-portable bench plan-picture clean

deps:
	@missing=""; for p in $(DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build $(BUILD) --product qlora

demo: build
	$(RELEASE)/qlora demo

test: deps test-consumer
	$(SWIFT) build $(BUILD) --build-tests
	$(SWIFT) test $(BUILD) --skip-build --disable-swift-testing

# A throw-away package depending on a tagged clone of this repository by URL and version, as
# users add it; SwiftPM refuses unsafe build flags there. Uses the committed HEAD.
test-consumer: deps
	Tests/Consumer/run.sh

# The portable path alone, as on a CPU without AVX2 or a non-x86 target: -DCQ_PORTABLE_ONLY
# compiles every x86 kernel out (CQ_X86 == 0 in kernels_internal.h), in its own build folder.
# Fails if any ymm/zmm instruction is left in the kernels' objects, then runs the whole suite
# (the tests that walk the ISAs find only the portable one).
PORTABLE := --scratch-path .build-portable $(BUILD) -Xcc -DCQ_PORTABLE_ONLY
test-portable: deps
	$(SWIFT) build $(PORTABLE) --build-tests
	@objs=$$(ls .build-portable/release/CQLoRAKernels.build/*.o); \
	if objdump -d --no-show-raw-insn $$objs | grep -E '%[yz]mm' | head -n 5 | grep .; then \
	  echo "test-portable: AVX instructions in the portable kernels" >&2; exit 1; \
	fi; echo "test-portable: no ymm/zmm instruction in $$(echo $$objs | wc -w) kernel objects"
	$(SWIFT) test $(PORTABLE) --skip-build --disable-swift-testing

bench: deps
	$(SWIFT) build $(BUILD) --product qlora-bench
	$(RELEASE)/qlora-bench --output Benchmarks/results/latest.md

# The picture of the optimized llama-mlp plan shown in README (needs graphviz).
plan-picture: build
	@command -v dot >/dev/null || (apt-get update -qq && apt-get install -y -qq graphviz)
	$(RELEASE)/qlora dump Graphs/llama-mlp.json --stage optimized --format dot \
	  --dim hidden=64 --dim intermediate=128 --tokens 4 > docs/llama-mlp.dot
	dot -Tsvg docs/llama-mlp.dot -o docs/llama-mlp.svg

clean:
	rm -rf .build .build-portable
