#!/usr/bin/env python3
"""Makes the llama.cpp-vocabulary fixtures ONCE (tests never run Python).

Reads llama.cpp's vocabulary-only GGUFs and test vectors that `make vocab` extracts into
models/vocab/ (from PyPI's llama-cpp-python 0.3.36 sdist) and writes cases.json:

- "vocabs"[name]["llamacpp_detokenized"]: llama.cpp's own detokenization (llama-cpp-python's
  low-level llama_detokenize, remove_special false, unparse_special true: what
  tests/test-tokenizer-0.cpp's common_detokenize calls) of each .out id list, and
  "llamacpp_tokenize_matches_out": whether llama.cpp 0.3.36 still encodes each .inp string to the
  .out ids (add_special false, parse_special false, as test-tokenizer-0.cpp does);
- "vocabs"[name]["transformers_ids"] for the SentencePiece ("llama") vocabularies llama-spm and
  phi-3: transformers' encodings of each .inp string (AutoTokenizer.from_pretrained(dir,
  gguf_file=...), add_special_tokens False): the reference where llama.cpp and transformers differ;
- "export"[name] for llama-spm and phi-3: the tokenizer.json / tokenizer_config.json transformers
  saves for that GGUF (save_pretrained): the tokenizer.json with model.vocab and model.merges
  replaced by their counts and the SHA-256 of their lines ("token\\tid\\n" in file order,
  "left right\\n" in rank order, UTF-8), and tokenizer_config.json whole.

Run (after `make vocab`):  /tmp/torchvenv/bin/python Tests/Fixtures/llamacpp-vocab/make_fixtures.py
(made with transformers 5.24.0, tokenizers 0.23.x, llama-cpp-python 0.3.36)
"""
import ctypes
import hashlib
import json
import os
import shutil
import tempfile

import llama_cpp
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
VOCAB = os.path.join(ROOT, "models", "vocab")
NAMES = ["llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2", "starcoder", "refact", "command-r", "mpt",
         "falcon", "deepseek-coder", "deepseek-llm"]
SENTENCEPIECE = ["llama-spm", "phi-3"]
SEP = "\n__ggml_vocab_test__\n"


def read_tests(name):
    """As test-tokenizer-0.cpp's read_tests: .inp split on SEP, .out one line of ids per string."""
    with open(os.path.join(VOCAB, f"ggml-vocab-{name}.gguf.inp"), encoding="utf-8", newline="") as f:
        raw = f.read()
    strings, pos = [], 0
    while pos < len(raw):
        nxt = raw.find(SEP, pos)
        if nxt < 0:
            strings.append(raw[pos:])
            break
        strings.append(raw[pos:nxt])
        pos = nxt + len(SEP)
    with open(os.path.join(VOCAB, f"ggml-vocab-{name}.gguf.out"), encoding="utf-8", newline="") as f:
        outs = [[int(t) for t in line.strip().split(" ") if t] for line in f.read().split("\n")[: len(strings)]]
    assert len(strings) == len(outs), name
    return strings, outs


def llamacpp(name, strings, outs):
    path = os.path.join(VOCAB, f"ggml-vocab-{name}.gguf").encode()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(path, params)
    assert model, name
    vocab = llama_cpp.llama_model_get_vocab(model)
    detok, matches = [], []
    for s, ids in zip(strings, outs):
        b = s.encode("utf-8")
        n_max = len(b) * 4 + 16
        toks = (llama_cpp.llama_token * n_max)()
        n = llama_cpp.llama_tokenize(vocab, b, len(b), toks, n_max, False, False)
        assert n >= 0
        matches.append(list(toks[:n]) == ids)
        arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
        cap = 64 + 32 * len(ids)
        buf = ctypes.create_string_buffer(cap)
        m = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, cap, False, True)
        assert m >= 0
        detok.append(buf.raw[:m].decode("utf-8", errors="replace"))
    llama_cpp.llama_model_free(model)
    return detok, matches


def lines_sha(lines):
    h = hashlib.sha256()
    for line in lines:
        h.update((line + "\n").encode("utf-8"))
    return h.hexdigest()


def transformers_side(name, strings):
    tmp = tempfile.mkdtemp()
    try:
        shutil.copy(os.path.join(VOCAB, f"ggml-vocab-{name}.gguf"), os.path.join(tmp, "v.gguf"))
        tok = transformers.AutoTokenizer.from_pretrained(tmp, gguf_file="v.gguf")
        ids = [tok(s, add_special_tokens=False)["input_ids"] for s in strings]
        out = os.path.join(tmp, "saved")
        tok.save_pretrained(out)
        with open(os.path.join(out, "tokenizer.json"), encoding="utf-8") as f:
            tj = json.load(f)
        with open(os.path.join(out, "tokenizer_config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        vocab, merges = tj["model"]["vocab"], tj["model"]["merges"]
        tj["model"]["vocab"] = {"count": len(vocab), "sha256": lines_sha(f"{t}\t{i}" for t, i in vocab.items())}
        tj["model"]["merges"] = {"count": len(merges), "sha256": lines_sha(f"{l} {r}" for l, r in merges)}
        return ids, {"tokenizer.json": tj, "tokenizer_config.json": cfg}
    finally:
        shutil.rmtree(tmp)


def main():
    doc = {"source": "llama-cpp-python 0.3.36 sdist, vendor/llama.cpp/models (see the Makefile's vocab target)",
           "versions": {"transformers": transformers.__version__, "llama_cpp_python": llama_cpp.__version__},
           "vocabs": {}, "export": {}}
    for name in NAMES:
        strings, outs = read_tests(name)
        detok, matches = llamacpp(name, strings, outs)
        entry = {"count": len(strings), "llamacpp_detokenized": detok, "llamacpp_tokenize_matches_out": matches}
        if name in SENTENCEPIECE:
            ids, export = transformers_side(name, strings)
            entry["transformers_ids"] = ids
            doc["export"][name] = export
        doc["vocabs"][name] = entry
    with open(os.path.join(HERE, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
