#!/usr/bin/env python3
"""Makes the GGUF llama-vocabulary fixtures ONCE (tests never run Python).

A GGUF is written the way llama.cpp's convert_hf_to_gguf.py writes a Mistral / Llama-2 model's
SentencePiece vocabulary (tokenizer.ggml.model "llama": tokens, scores, token_type from
../sentencepiece/tokenizer.model.v1's pieces; bos/eos/unk ids; add_bos_token true, add_eos_token
false; add_space_prefix true; tokenizer.chat_template = ../chat/templates/llama2.jinja) with a tiny
random Llama (2 layers, hidden 16) so transformers accepts it. It is not committed: the Swift test
rebuilds the same metadata from tokenizer.model.v1. transformers' own tokenizer built from it
(AutoTokenizer.from_pretrained(dir, gguf_file=...), which derives the merges from tokens and scores
with generate_merges) is the reference:

cases.json:
- "backend": the backend tokenizer's normalizer / pre_tokenizer / decoder / post_processor / model
  flags and added tokens (what the Swift side must build);
- "merges": how many merges transformers derived, the first 50, and the SHA-256 of all of them
  joined as "left right\\n" lines (UTF-8);
- "cases": every string of ../sentencepiece/cases.json plus a few with special tokens: ids and
  tokens without special tokens, ids with them (BOS added), decode(ids) with skip_special_tokens
  False and True; "ids_llamacpp" is llama.cpp's tokenization of the same GGUF (llama-cpp-python,
  add_bos False, special True) where it differs, for the notes in docs/tokenizers.md;
- "decodes": decode of a few id lists;
- "chats": the llama2 and mixtral templates rendered by apply_chat_template on the conversations of
  ../chat/make_fixtures.py, tokenized (no special tokens added) with the assistant-only labels of
  Sources/QLoRA/Text/ChatEncoding.swift computed here from the offsets.

Run:  /tmp/torchvenv/bin/python Tests/Fixtures/gguf-llama-vocab/make_fixtures.py
(a venv with transformers, tokenizers, gguf, sentencepiece, jinja2, numpy, llama-cpp-python)
"""
import hashlib
import importlib.util
import json
import os
import tempfile

import gguf
import numpy as np
import sentencepiece as spm
import tokenizers
import transformers
from transformers import AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.dirname(HERE)
MODEL = os.path.join(FIXTURES, "sentencepiece", "tokenizer.model.v1")

EXTRA_STRINGS = [
    "<s>Hello</s>",
    "<s> Hello",
    "Hi <s> there</s> ",
    "<unk>x<unk>",
    "[INST] What is 2+2? [/INST]",
    " [INST]  two  [/INST] ",
    "</s></s>",
    "a<s>",
]


def write_gguf(path):
    sp = spm.SentencePieceProcessor(model_file=MODEL)
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        # As convert_hf_to_gguf.py's _create_vocab_sentencepiece.
        tokens.append(sp.id_to_piece(i).encode("utf-8"))
        scores.append(sp.get_score(i))
        t = gguf.TokenType.NORMAL
        if sp.is_unknown(i):
            t = gguf.TokenType.UNKNOWN
        elif sp.is_control(i):
            t = gguf.TokenType.CONTROL
        elif sp.is_unused(i):
            t = gguf.TokenType.UNUSED
        elif sp.is_byte(i):
            t = gguf.TokenType.BYTE
        types.append(t)
    with open(os.path.join(FIXTURES, "chat", "templates", "llama2.jinja"), encoding="utf-8") as f:
        template = f.read()
    w = gguf.GGUFWriter(path, "llama")
    hidden, layers, heads, ff, vocab = 16, 2, 2, 32, len(tokens)
    w.add_context_length(64)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_rope_dimension_count(hidden // heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.add_chat_template(template)
    rng = np.random.default_rng(0)

    def t(name, *shape):
        w.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))
    t("token_embd.weight", vocab, hidden)
    w.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    t("output.weight", vocab, hidden)
    for b in range(layers):
        w.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(hidden, dtype=np.float32))
        w.add_tensor(f"blk.{b}.ffn_norm.weight", np.ones(hidden, dtype=np.float32))
        for n in ("attn_q", "attn_k", "attn_v", "attn_output"):
            t(f"blk.{b}.{n}.weight", hidden, hidden)
        t(f"blk.{b}.ffn_gate.weight", ff, hidden)
        t(f"blk.{b}.ffn_up.weight", ff, hidden)
        t(f"blk.{b}.ffn_down.weight", hidden, ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return template


def llamacpp_tokenizer(path):
    try:
        import llama_cpp
    except ImportError:
        return None
    try:
        return llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    except Exception as e:  # noqa: BLE001
        print("llama.cpp could not load the GGUF:", e)
        return None


def labels_by_rule(tok, text, before_texts, messages, eos):
    """Sources/QLoRA/Text/ChatEncoding.swift: token p is trained iff its span overlaps an assistant span."""
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = before_texts[i]
        assert text.startswith(before)
        s = len(before)
        content = m["content"] if text.startswith(m["content"], s) else m["content"].strip()
        if not text.startswith(content, s):  # Llama-2 writes ' ' + content.strip() after [/INST]
            while s < len(text) and text[s] == " ":
                s += 1
        assert text.startswith(content, s)
        end = s + len(content)
        p = end
        while p < len(text) and text[p] in " \n":
            p += 1
        if text.startswith(eos, p):
            end = p + len(eos)
        spans.append([s, end])
    e = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = [i if any(a < hi and b > lo for lo, hi in spans) else -100 for i, (a, b) in zip(e["input_ids"], e["offset_mapping"])]
    return {"text": text, "ids": e["input_ids"], "labels": labels, "assistant_spans": spans}


def main():
    with open(os.path.join(FIXTURES, "sentencepiece", "cases.json"), encoding="utf-8") as f:
        strings = [c["text"] for c in json.load(f)["cases"] if "text" in c] + EXTRA_STRINGS
    spec = importlib.util.spec_from_file_location("chat_fixtures", os.path.join(FIXTURES, "chat", "make_fixtures.py"))
    chat_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chat_module)

    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "tiny-mistral-vocab.gguf")
    write_gguf(path)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=os.path.basename(path))
    backend = json.loads(tok.backend_tokenizer.to_str())
    lcpp = llamacpp_tokenizer(path)

    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in backend["model"]["merges"]]
    joined = "".join(f"{a} {b}\n" for a, b in merges).encode("utf-8")

    cases = []
    for s in strings:
        ids = tok.encode(s, add_special_tokens=False)
        case = {"text": s, "ids": ids, "tokens": tok.convert_ids_to_tokens(ids),
                "ids_with_special": tok.encode(s), "decoded": tok.decode(ids, skip_special_tokens=False),
                "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)}
        if lcpp is not None:
            lc = lcpp.tokenize(s.encode("utf-8"), add_bos=False, special=True)
            if lc != ids:
                case["ids_llamacpp"] = lc
        cases.append(case)
    decodes = []
    for ids in ([1, 22557, 1526, 2], [0, 28705, 13, 13, 243, 162, 169, 156], [243, 162], [28705, 28705, 22557],
                [1526], [259, 989], [13, 22557], [1, 1, 22557], [0, 22557], [2, 22557], [22557, 1, 22557],
                [243, 22557], [1526, 22557], [240, 159, 152, 128], [240, 159], [237, 160, 128], [195, 40, 22557]):
        decodes.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                        "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})

    chats = []
    eos = tok.eos_token
    for name in ("llama2", "mixtral"):
        with open(os.path.join(FIXTURES, "chat", "templates", name + ".jinja"), encoding="utf-8") as f:
            template = f.read()

        def render(msgs, gen):
            return tok.apply_chat_template(msgs, chat_template=template, tokenize=False, add_generation_prompt=gen)
        for conv_name, messages in chat_module.CONVERSATIONS.items():
            try:
                text = render(messages, False)
                before = {i: render(messages[:i], True) for i, m in enumerate(messages) if m["role"] == "assistant"}
                case = labels_by_rule(tok, text, before, messages, eos)
            except Exception as e:  # noqa: BLE001  raise_exception (roles not alternating), or the rule cannot locate a message
                print("skipped:", name, conv_name, type(e).__name__, e)
                continue
            chats.append({"template": name, "name": conv_name, "messages": messages, **case})

    doc = {
        "made_by": f"transformers {transformers.__version__} AutoTokenizer.from_pretrained(gguf_file=...), "
                   f"tokenizers {tokenizers.__version__}, gguf-py {getattr(gguf, '__version__', '?')}, "
                   f"llama-cpp-python {__import__('llama_cpp').__version__ if lcpp is not None else 'absent'}",
        "gguf": {"tokenizer.ggml.model": "llama", "source": "../sentencepiece/tokenizer.model.v1",
                 "bos_token_id": 1, "eos_token_id": 2, "unknown_token_id": 0, "add_bos_token": True,
                 "add_eos_token": False, "add_space_prefix": True, "chat_template": "../chat/templates/llama2.jinja"},
        "backend": {k: backend.get(k) for k in ("normalizer", "pre_tokenizer", "decoder", "post_processor")}
                   | {"model": {k: v for k, v in backend["model"].items() if k not in ("vocab", "merges")},
                      "added_tokens": backend["added_tokens"],
                      "bos_token": tok.bos_token, "eos_token": tok.eos_token, "unk_token": tok.unk_token,
                      "pad_token": tok.pad_token},
        "merges": {"count": len(merges), "first": [list(m) for m in merges[:50]],
                   "sha256": hashlib.sha256(joined).hexdigest()},
        "cases": cases,
        "decodes": decodes,
        "chats": chats,
    }
    with open(os.path.join(HERE, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    differ = sum(1 for c in cases if "ids_llamacpp" in c)
    print(len(cases), "cases,", len(decodes), "decodes,", len(chats), "chats,", len(merges), "merges;",
          differ, "strings where llama.cpp differs")


if __name__ == "__main__":
    main()
