#!/usr/bin/env python3
"""Writes the fuzz seed corpora under Tests/Fuzz/corpus/<target>/ (run once; the outputs are
committed). Standard library only. Sources: ../shared/reference (bitsandbytes checkpoint, PEFT
adapter, SmolLM2 tokenizer), Graphs/*.json, and small files built here."""
import json, os, struct, sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REF = os.path.join(ROOT, "..", "shared", "reference")
OUT = os.path.join(ROOT, "Tests", "Fuzz", "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(OUT, target), exist_ok=True)
    with open(os.path.join(OUT, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    meta = header.pop("__metadata__", None)
    data = b[8 + n:]
    return meta, {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}


def write_st(tensors, meta=None):
    """safetensors as the Python library writes it (largest dtype first, then name; padded header)."""
    size = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "U8": 1, "I8": 1, "I32": 4, "I64": 8}
    order = sorted(tensors, key=lambda k: (-size[tensors[k][0]], k))
    header, blob = {}, b""
    if meta:
        header["__metadata__"] = meta
    for k in order:
        dtype, shape, raw = tensors[k]
        header[k] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


# safetensors: every float dtype, an empty tensor, metadata.
put("safetensors", "small", write_st({
    "a": ("F32", [2, 3], f32(1, -2, 3.5, 0, float("inf"), -0.0)),
    "b": ("BF16", [2], struct.pack("<2H", 0x3f80, 0xc000)),
    "c": ("F16", [1, 1], struct.pack("<H", 0x3c00)),
    "d": ("F64", [1], struct.pack("<d", 0.1)),
    "e": ("U8", [4], b"\x01\x02\x03\x04"),
    "empty": ("F32", [0, 4], b""),
}, {"format": "pt"}))
put("safetensors", "scalar", write_st({"s": ("F32", [], f32(7))}))

# bitsandbytes: one double-quant NF4 parameter (all six tensors) of the reference checkpoint, and
# its quant-state JSON alone.
meta, bnb = read_st(os.path.join(REF, "interop", "model_bnb4bit", "model.safetensors"))
p = "model.layers.0.self_attn.k_proj.weight"
put("bnb-checkpoint", "k_proj_nf4_dq", write_st({k: v for k, v in bnb.items() if k.startswith(p)}, meta))
put("bnb-checkpoint", "plain_only", write_st({"model.norm.weight": bnb["model.norm.weight"]}, meta))
state = bnb[p + ".quant_state.bitsandbytes__nf4"][2]
put("bnb-quant-state", "nested", state)
put("bnb-quant-state", "plain", json.dumps({"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [16, 64]}))

# PEFT adapter: config + weights (the harness's input is u16 config length, config, safetensors).
cfg = open(os.path.join(REF, "interop", "adapter", "adapter_config.json"), "rb").read()
put("adapter-config", "reference", cfg)
put("adapter-config", "rank_pattern", json.dumps({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"],
                                                  "rank_pattern": {"v_proj": 2}, "alpha_pattern": {"q_proj": 16}, "use_rslora": True}))
_, ad = read_st(os.path.join(REF, "interop", "adapter", "adapter_model.safetensors"))
one = {k: v for k, v in ad.items() if ".layers.0.mlp.up_proj." in k}
put("adapter", "reference_one_module", struct.pack("<H", len(cfg)) + cfg + write_st(one, {"format": "pt"}))

# GGUF v3: metadata of every scalar type, a string array, and F32 / F16 / Q8_0 / Q4_1 tensors.
def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b

kvs = [gstr("general.architecture") + struct.pack("<I", 8) + gstr("llama"),
       gstr("llama.block_count") + struct.pack("<I", 4) + struct.pack("<I", 1),
       gstr("general.alignment") + struct.pack("<I", 4) + struct.pack("<I", 32),
       gstr("llama.rope.freq_base") + struct.pack("<I", 6) + f32(10000.0),
       gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + gstr("a") + gstr("b"),
       gstr("flag") + struct.pack("<IB", 7, 1),
       gstr("big") + struct.pack("<Iq", 11, -5)]
tensors = [("f32", 0, [4, 2], f32(*range(8))),
           ("f16", 1, [2], struct.pack("<2H", 0x3c00, 0xbc00)),
           ("q8_0", 8, [32], struct.pack("<H", 0x3c00) + bytes(range(32))),
           ("q4_1", 3, [32], struct.pack("<2H", 0x3c00, 0x3800) + bytes(range(16)))]
infos, data = b"", b""
for name, t, ne, raw in tensors:
    infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne) + struct.pack("<IQ", t, len(data))
    data += raw + b"\0" * ((32 - len(raw) % 32) % 32)
head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + infos
put("gguf", "four_types", head + b"\0" * ((32 - len(head) % 32) % 32) + data)

# tokenizer.json: a byte-level BPE with the 256 byte symbols, a few merges and added tokens.
def byte_alphabet():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}

alpha = byte_alphabet()
vocab = {"<|endoftext|>": 0, "<|im_start|>": 1}
for b in range(256):
    vocab[alpha[b]] = len(vocab)
merges = [["Ġ", "t"], ["h", "e"], ["Ġt", "he"], ["l", "l"], ["he", "ll"]]
for a, b in merges:
    vocab[a + b] = len(vocab)
tok = {"version": "1.0", "truncation": None, "padding": None,
       "added_tokens": [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
                        for c, i in [("<|endoftext|>", 0), ("<|im_start|>", 1)]],
       "normalizer": None,
       "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
       "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
       "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "", "end_of_word_suffix": "",
                 "fuse_unk": False, "byte_fallback": False, "ignore_merges": False, "vocab": vocab, "merges": merges}}
put("tokenizer-json", "small_bytelevel", json.dumps(tok, ensure_ascii=False))

# Round-trip property: text seeds.
for i, s in enumerate(["Hello, world!", "  two  spaces\n\ttab", "I'M fine, it's 2024.", "wörld 🙂 日本語",
                       "<|im_start|>user\nhi<|im_end|>", "\u0004ctl\u001d", "x" * 200]):
    put("tokenizer-roundtrip", "text%d" % i, s)

# Graph JSON: the shipped graphs.
for g in sorted(os.listdir(os.path.join(ROOT, "Graphs"))):
    put("graph-json", g, open(os.path.join(ROOT, "Graphs", g), "rb").read())
print("seeds written to", OUT)
