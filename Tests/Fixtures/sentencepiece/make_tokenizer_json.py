#!/usr/bin/env python3
"""Makes the SentencePiece-style tokenizer.json fixtures ONCE (tests never run Python).

tokenizer.json: transformers' own conversion of tokenizer.model.v1 (see convert()), variant
"metaspace_always". The other two variants differ only in "normalizer" and "pre_tokenizer"; those
fields of all three are stored in json_cases.json ("variants") and the test patches them in, to keep
one 1.4 MB file (written without indentation).

json_cases.json: for every string of cases.json (make_fixtures.py's STRINGS) and each of the three variants, the
`tokenizers` library's encoding (ids, tokens, offsets; no special tokens), its ids with add_special_tokens, and decode(ids)
(skip_special_tokens False and True) of the ids and of a few id lists.

chat_cases.json: the Llama-2 and Mixtral chat templates of ../chat/templates rendered by
transformers' render_jinja_template (what apply_chat_template runs) on the conversations of ../chat/make_fixtures.py, tokenized by
`tokenizers` (no special tokens added), with the assistant-only labels of docs/chat-templates.md
computed here from `tokenizers`' offsets.

Run:  python3 -m pip install --target /tmp/pb protobuf   (transformers' converter needs it)
      PYTHONPATH=/tmp/pb /tmp/torchvenv/bin/python Tests/Fixtures/sentencepiece/make_tokenizer_json.py
(a venv with transformers, tokenizers, sentencepiece, jinja2 and protobuf does as well)
(made with transformers 5.24.0, tokenizers 0.23.3)
"""
import json
import os
import tokenizers
import transformers
import shutil
import tempfile

from tokenizers import normalizers, processors
from transformers import LlamaTokenizer
from transformers.utils.chat_template_utils import render_jinja_template

HERE = os.path.dirname(os.path.abspath(__file__))
# The STRINGS of make_fixtures.py, as stored in its cases.json (in order).
with open(os.path.join(HERE, "cases.json"), encoding="utf-8") as _f:
    STRINGS = [c["text"] for c in json.load(_f)["cases"] if "text" in c]

MODEL = os.path.join(HERE, "tokenizer.model.v1")
SPECIAL = {0: "<unk>", 1: "<s>", 2: "</s>"}


def convert(variant):
    """transformers' own conversion (LlamaTokenizer.from_pretrained on a folder holding the model as
    tokenizer.model): legacy=True gives Metaspace(prepend_scheme "always"), legacy=False "first".
    "normalizer" is what transformers 4 wrote for legacy Llama-2 files: no pre-tokenizer and the
    normalizer Sequence[Prepend("▁"), Replace(" ", "▁")]. All get the post-processor
    LlamaTokenizerFast 4.x wrote (TemplateProcessing "<s> $A")."""
    folder = tempfile.mkdtemp()
    shutil.copyfile(MODEL, os.path.join(folder, "tokenizer.model"))
    tok = LlamaTokenizer.from_pretrained(folder, legacy=(variant != "metaspace_first")).backend_tokenizer
    if variant == "normalizer":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.pre_tokenizer = None
    tok.post_processor = processors.TemplateProcessing(single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1",
                                                       special_tokens=[("<s>", 1)])
    return tok


def encodings(tok):
    cases = []
    for s in STRINGS:
        e = tok.encode(s, add_special_tokens=False)
        cases.append({"text": s, "ids": e.ids, "tokens": e.tokens, "offsets": [list(o) for o in e.offsets],
                      "ids_with_special": tok.encode(s).ids,
                      "decoded": tok.decode(e.ids, skip_special_tokens=False)})
    for ids in ([1, 22557, 1526, 2], [0, 28705, 13, 13, 243, 162, 169, 156], [243, 162], [28705, 28705, 22557],
                [1526], [259, 989], [13, 22557], [1, 1, 22557], [0, 22557], [2, 22557], [22557, 1, 22557],
                [243, 22557], [1526, 22557], [240, 159, 152, 128], [240, 159], [237, 160, 128], [195, 40, 22557]):
        cases.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                      "decoded_skip_special": tok.decode(ids, skip_special_tokens=True)})
    return cases


def labels_by_rule(tok, template, messages, tokens):
    """docs/chat-templates.md: token p is trained iff its span overlaps an assistant span."""
    def render(msgs, gen):
        out, _ = render_jinja_template(conversations=[msgs], chat_template=template, add_generation_prompt=gen, **tokens)
        return out[0]
    text = render(messages, False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(messages[:i], True)
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
        if text.startswith(tokens["eos_token"], p):
            end = p + len(tokens["eos_token"])
        spans.append([s, end])
    e = tok.encode(text, add_special_tokens=False)
    labels = [i if any(a < hi and b > lo for lo, hi in spans) else -100 for i, (a, b) in zip(e.ids, e.offsets)]
    return {"text": text, "ids": e.ids, "labels": labels, "assistant_spans": spans}


def main():
    variants = {v: convert(v) for v in ("metaspace_always", "metaspace_first", "normalizer")}
    variants["metaspace_always"].save(os.path.join(HERE, "tokenizer.json"), pretty=False)
    doc = {"made_by": f"transformers {transformers.__version__} LlamaTokenizer.from_pretrained, tokenizers {tokenizers.__version__}",
           "tokenizer_json": "tokenizer.json (metaspace_always)",
           "variants": {v: {k: json.loads(t.to_str())[k] for k in ("normalizer", "pre_tokenizer")} for v, t in variants.items()},
           "cases": {v: encodings(t) for v, t in variants.items()}}
    with open(os.path.join(HERE, "json_cases.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")


    chat_cases = []
    for name in ("llama2", "mixtral"):
        with open(os.path.join(HERE, "..", "chat", "templates", name + ".jinja"), encoding="utf-8") as f:
            template = f.read()
        for variant, tok in variants.items():
            for conv_name, messages in CONVERSATIONS.items():
                try:
                    case = labels_by_rule(tok, template, messages, TOKENS)
                except Exception as e:  # raise_exception (roles not alternating), or the rule cannot locate a message
                    print("skipped:", name, variant, conv_name, type(e).__name__, e)
                    continue
                chat_cases.append({"template": name, "variant": variant, "name": conv_name, "messages": messages, **case})
    with open(os.path.join(HERE, "chat_cases.json"), "w", encoding="utf-8") as f:
        json.dump({"made_by": doc["made_by"], "variables": TOKENS, "cases": chat_cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(len(doc["cases"]["normalizer"]), "cases per variant,", len(chat_cases), "chat cases")


TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
CONVERSATIONS = None

if __name__ == "__main__":
    import importlib.util
    spec = importlib.util.spec_from_file_location("chat_fixtures", os.path.join(HERE, "..", "chat", "make_fixtures.py"))
    chat_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chat_module)
    CONVERSATIONS = chat_module.CONVERSATIONS
    main()
