#!/usr/bin/env python3
"""Makes the SentencePiece fixtures ONCE (tests never run Python).

The model is Mistral's tokenizer.model.v1 (SentencePiece BPE, 32000 pieces, byte fallback, the
Llama-2 / Mistral-7B-v0.1 vocabulary style) shipped in PyPI mistral-common (Apache-2.0), copied
here as tokenizer.model.v1. cases.json holds, for each string, what the `sentencepiece` library
itself gives: ids (encode, no BOS/EOS), pieces, and decode(ids).

Run:  python3 -m venv /tmp/venv-text && /tmp/venv-text/bin/pip install sentencepiece mistral-common
      /tmp/venv-text/bin/python Tests/Fixtures/sentencepiece/make_fixtures.py
(made with sentencepiece 0.2.x, mistral-common from PyPI)
"""
import json
import os
import shutil

import mistral_common
import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(os.path.dirname(mistral_common.__file__), "data", "tokenizer.model.v1")
MODEL = os.path.join(HERE, "tokenizer.model.v1")

STRINGS = [
    "", " ", "  ", "Hello world", " Hello world", "Hello  world ", "  two  spaces ", "\n", "a\nb", "a\n\nb\n",
    "\t tab", "trailing   ", "Hello, World! How's it going?", "I'M FINE", "don't won't can't",
    "12345 67.89 -3e10", "2026-11-30T18:45:00Z", "x=1; y = x ** 2", "def f(a, b):\n    return a + b\n",
    "<s> is text here </s>", "<unk>", "[INST] hi [/INST]", "▁ already", "▁▁x",
    "café naïve résumé", "Ünïcödé ßtraße", "日本語のテキスト", "中文字符测试", "한국어 텍스트", "Привет, мир!",
    "مرحبا بالعالم", "नमस्ते दुनिया", "🦙 llama 🐪", "👨‍👩‍👧 family", "e\u0301 combining", "\u00a0nbsp\u2003em",
    "\u3000ideographic space", "zero\u200bwidth", "\u0000nul\u0001", "\x7f del", "a" * 50, "ab" * 40,
    "supercalifragilisticexpialidocious", "The quick brown fox jumps over the lazy dog.",
    "https://example.com/path?q=1&r=2#frag", "email@example.com", "C:\\Windows\\System32", "\"quoted\" 'single'",
    "(parens) [brackets] {braces} <angles>", "#hashtag @mention $100 50% ^caret &amp *star",
    "Zorbix hums in B♭ at 42°C", "math: ∑ ∫ √ ∞ ≠ ≤", "\U0001F600\U0001F601", "\U000E0001 tag", "\uFFFD replacement",
    "end.", " .", "...", "--", "a b c d e f g", "A\r\nB\rC", "😀" * 3, "‍", "Ω≈ç√∫˜µ≤≥÷",
]


def main():
    shutil.copyfile(SOURCE, MODEL)
    sp = spm.SentencePieceProcessor(model_file=MODEL)
    cases = []
    for s in STRINGS:
        ids = sp.encode(s)
        cases.append({"text": s, "ids": ids, "pieces": sp.id_to_piece(ids), "decoded": sp.decode(ids)})
    for ids in ([1, 22557, 1526, 2], [0, 28705, 13, 13, 243, 162, 169, 156], [243, 162], [28705, 28705, 22557],
                [1526], [259, 989], [13, 22557], [1, 1, 22557], [0, 22557], [2, 22557], [22557, 1, 22557],
                [243, 22557], [1526, 22557], [240, 159, 152, 128], [240, 159], [237, 160, 128], [195, 40, 22557]):
        cases.append({"ids": ids, "decoded": sp.decode(ids)})
    doc = {"model": "tokenizer.model.v1", "made_by": f"sentencepiece {spm.__version__}",
           "vocab_size": sp.get_piece_size(), "bos_id": sp.bos_id(), "eos_id": sp.eos_id(), "unk_id": sp.unk_id(),
           "cases": cases}
    with open(os.path.join(HERE, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(len(cases), "cases")


if __name__ == "__main__":
    main()
