# Dev-time generator of tokenizer_cases.json (tests never run Python): random texts encoded by
# Hugging Face `tokenizers` (pip install tokenizers; 0.23.3 used) with SmolLM2's vocabulary under
# several pre-tokenizers, and a small synthetic tokenizer exercising added-token flags, "a b"
# merges and ignore_merges. Run: python3 make_tokenizer_cases.py ../../../../shared/reference
import json, random, sys
from tokenizers import Tokenizer
import tokenizers

ref = sys.argv[1] if len(sys.argv) > 1 else "../../../../shared/reference"
base = json.load(open(f"{ref}/smollm2/tokenizer/tokenizer.json"))
rng = random.Random(1130)
pools = [(0x61, 0x7A), (0x41, 0x5A), (0x30, 0x39), (0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E),
         (0x00, 0x20), (0xA0, 0xFF), (0x100, 0x2FF), (0x300, 0x36F), (0x4E00, 0x9FFF), (0x1F300, 0x1F64F),
         (0x600, 0x6FF), (0x900, 0x97F), (0xAC00, 0xD7A3), (0x2000, 0x206F), (0x3000, 0x303F),
         (0xFF00, 0xFFEF), (0x10000, 0x10FFFF), (0x660, 0x669), (0x2150, 0x218F)]
snippets = ["'s", "'S", "'ll", "'Re", "n't", " 's", "  ", "\n\n", "\r\n", " \n ", "\t", "123456", " 42",
            "<|im_start|>", "<|im_end|>", "x  1", "a-b-c", "--", "<sw>", " <ls>", "<rs>  ", "[N]", "<|x|>yz"]
def text():
    out = []
    for _ in range(rng.randint(1, 40)):
        if rng.random() < 0.2:
            out.append(rng.choice(snippets))
        else:
            lo, hi = rng.choice(pools)
            c = rng.randint(lo, hi)
            if 0xD800 <= c <= 0xDFFF:
                continue
            out.append(chr(c))
    return "".join(out)
texts = [text() for _ in range(200)]

def byte_level(prefix=False, regex=True):
    return {"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": True, "use_regex": regex}
def split(pattern, behavior, invert=False):
    return {"type": "Split", "pattern": pattern, "behavior": behavior, "invert": invert}
LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
variants = {
    "smollm2": base["pre_tokenizer"],
    "llama3": {"type": "Sequence", "pretokenizers": [split({"Regex": LLAMA3}, "Isolated"), byte_level(False, False)]},
    "qwen2": {"type": "Sequence", "pretokenizers": [split({"Regex": QWEN2}, "Isolated"), byte_level(False, False)]},
    "llamacpp_smollm": {"type": "Sequence", "pretokenizers": [split({"Regex": r"\p{N}"}, "Isolated"), byte_level(False, True)]},
    "digits_prefix_space": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level(True, True)]},
    "digits_runs": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": False}, byte_level(False, True)]},
}
for b in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]:
    variants[f"split_{b}"] = {"type": "Sequence", "pretokenizers": [split({"String": "-"}, b), byte_level(False, False)]}
    variants[f"split_{b}_invert"] = {"type": "Sequence", "pretokenizers": [split({"String": "-"}, b, True), byte_level(False, False)]}
ids = {}
for name, pre in variants.items():
    t = dict(base)
    t["pre_tokenizer"] = pre
    tok = Tokenizer.from_str(json.dumps(t))
    ids[name] = [tok.encode(s, add_special_tokens=False).ids for s in texts]

# The small tokenizer: bytes, a few merges as "a b" strings, ignore_merges, added-token flags.
alphabet = {}
n = 0
for b in list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100)):
    alphabet[b] = chr(b)
for b in range(256):
    if b not in alphabet:
        alphabet[b] = chr(256 + n); n += 1
vocab = {alphabet[b]: b for b in range(256)}
merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "Ġ s", "Ġs <", "s w", "o r", "Ġ w", "Ġw or"]
for m in merges:
    vocab.setdefault(m.replace(" ", ""), len(vocab))
vocab["Ġhello"] = len(vocab)   # reachable only through ignore_merges
added = [("<sw>", dict(single_word=True, special=False, normalized=False)),
         ("<ls>", dict(lstrip=True, special=True, normalized=False)),
         ("<rs>", dict(rstrip=True, special=True, normalized=False)),
         ("[N]", dict(special=False, normalized=True)),
         ("<|x|>", dict(special=True, normalized=False)),
         ("<|x|>yz", dict(special=True, normalized=False))]
added_tokens = []
for content, flags in added:
    vid = len(vocab) + len(added_tokens)
    entry = {"id": vid, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": False}
    entry.update(flags)
    added_tokens.append(entry)
small = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added_tokens, "normalizer": None,
         "pre_tokenizer": byte_level(False, True),
         "post_processor": {"type": "TemplateProcessing",
                            "single": [{"SpecialToken": {"id": "<ls>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                       {"SpecialToken": {"id": "<rs>", "type_id": 0}}],
                            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                            "special_tokens": {"<ls>": {"id": "<ls>", "ids": [added_tokens[1]["id"]], "tokens": ["<ls>"]},
                                               "<rs>": {"id": "<rs>", "ids": [added_tokens[2]["id"]], "tokens": ["<rs>"]}}},
         "decoder": byte_level(True, True),
         "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                   "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                   "vocab": vocab, "merges": merges}}
tok = Tokenizer.from_str(json.dumps(small))
small_texts = texts[:100] + ["hello world", " hello", "the other", "a<sw>b", "a <sw> b", "<sw>", " x <ls> y", "x <rs>   y",
                             "[N][N]", "<|x|>yzz <|x|>y", "Hello hello"]
small_ids = [tok.encode(s, add_special_tokens=False).ids for s in small_texts]
small_ids_with_special = [tok.encode(s, add_special_tokens=True).ids for s in small_texts[-11:]]
small_decoded_skip = [tok.decode(i, skip_special_tokens=True) for i in small_ids]

json.dump({"made_by": f"tokenizers {tokenizers.__version__} (make_tokenizer_cases.py)", "texts": texts, "variants": variants,
           "ids": ids, "small_tokenizer": small, "small_texts": small_texts, "small_ids": small_ids,
           "small_ids_with_special_tokens_last11": small_ids_with_special, "small_decoded_skip_special": small_decoded_skip},
          open("tokenizer_cases.json", "w"), ensure_ascii=False)
