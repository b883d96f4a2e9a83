#!/usr/bin/env python3
"""Writes the GGUF test fixtures in this folder (committed; the Swift tests never run Python).

    python3 -m venv /tmp/gguf-venv && /tmp/gguf-venv/bin/pip install gguf==0.19.0 numpy==2.4.6
    /tmp/gguf-venv/bin/python Tests/Fixtures/gguf/make_fixtures.py

For each ggml type T in TYPES: T.gguf holds a few tensors of that type (awkward row counts, 1-D,
2-D and 3-D, tiny values whose f16 scales are subnormal, all-zero blocks, and raw random blocks
that reach bit patterns quantize() never writes), and T.f32 is the expected dequantization of
all of them, in file order, as little-endian float32, computed by gguf-py's numpy code
(gguf.quants.dequantize), which is ggml's reference. Q4_K and Q6_K have no quantizer in
gguf-py, so their blocks are random bytes with finite f16 scales.

metadata.gguf holds every metadata value type (scalars, strings, arrays of each, arrays of
strings, a nested array) and general.alignment = 64; metadata.json is what gguf-py's GGUFReader
reads back from it. fixtures.json lists, for every file, gguf-py's view of the layout (data
offset, alignment, each tensor's type, ne, offset, byte size). Floats in JSON are the hex of
their bits so that NaN, infinities and -0 survive.
"""
import json
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, GGUFValueType as V
from gguf.quants import dequantize, quantize

from importlib.metadata import version

assert version("gguf") == "0.19.0", f"gguf {version('gguf')}: the fixtures were made with 0.19.0"
HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261130)

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q6_K"]


def f16_bits(values):
    return np.asarray(values, dtype=np.float16).view(np.uint16)


def random_scales(n):
    """Finite f16 scales: mostly normal, some subnormal, some zero, some negative."""
    s = (rng.standard_normal(n) * 0.02).astype(np.float16)
    s[::7] = np.float16(3e-6)      # subnormal f16
    s[3::11] = np.float16(-1.5e-7)  # subnormal, negative
    s[5::13] = np.float16(0)
    s[1::17] = np.float16(60000)   # large
    return s.view(np.uint16)


def raw_blocks(qtype, n_blocks, scale_offsets):
    """Random bytes per block, with the f16 fields at scale_offsets made finite."""
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in scale_offsets:
        b[:, off:off + 2] = random_scales(n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return b


SCALE_FIELDS = {  # byte offsets of the f16 fields of a block
    T.Q8_0: [0], T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2],
    T.Q4_K: [0, 2], T.Q6_K: [208],
}


def float_data(shape):
    x = (rng.standard_normal(shape) * rng.choice([0.02, 1.0, 30.0])).astype(np.float32)
    return x


def tensors_for(tname):
    """[(name, numpy shape (rows..., cols), raw bytes uint8 array)] for one type."""
    qtype = T[tname]
    out = []
    if tname in ("F32", "F16", "BF16"):
        shapes = [(5, 7), (13,), (3, 2, 9), (1, 33)]
        for i, shape in enumerate(shapes):
            x = float_data(shape)
            flat = x.reshape(-1)
            if i == 1:  # specials
                flat[:8] = [0.0, -0.0, np.inf, -np.inf, np.nan, 6e-8, -3e-5, 65504.0]
            if tname == "F32":
                raw = x.view(np.uint8)
            elif tname == "F16":
                h = x.astype(np.float16)
                raw = h.view(np.uint8)
            else:
                raw = quantize(x, T.BF16)
            out.append((f"t{i}.weight", shape, np.ascontiguousarray(raw).reshape(*shape[:-1], -1)))
        return out
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    if block == 32:
        shapes = [(3, 64), (7, 96), (1, 32), (2, 5, 32), (160,)]
    else:
        shapes = [(3, 256), (5, 512), (2, 1, 256)]
    for i, shape in enumerate(shapes):
        n = int(np.prod(shape))
        if qtype in (T.Q4_K, T.Q6_K):
            raw = raw_blocks(qtype, n // block, SCALE_FIELDS[qtype])
        else:
            x = float_data(shape)
            flat = x.reshape(-1)
            if i == 0:
                flat[:32] = 0.0                                          # d = 0 block
                flat[32:64] = rng.standard_normal(32).astype(np.float32) * 1e-6  # subnormal d
            if i == 2:
                flat[:] = np.linspace(-3, 1, 32, dtype=np.float32)
            raw = quantize(x, qtype)
        out.append((f"t{i}.weight", shape, np.ascontiguousarray(raw).reshape(*shape[:-1], -1)))
    # raw random blocks (bit patterns quantize() never writes), 4 rows
    nb = 4 * (64 // block if block == 32 else 1)
    raw = raw_blocks(qtype, nb, SCALE_FIELDS[qtype]).reshape(4, -1)
    out.append(("random.weight", (4, raw.shape[1] // type_size * block), raw))
    return out


def expected_f32(tname, raw):
    qtype = T[tname]
    if tname == "F32":
        return raw.view(np.float32).reshape(-1)
    if tname == "F16":
        return raw.view(np.float16).astype(np.float32).reshape(-1)
    return dequantize(raw, qtype).astype(np.float32, copy=False).reshape(-1)


def hexf32(x):
    return "%08x" % struct.unpack("<I", struct.pack("<f", x))[0]


def hexf64(x):
    return "%016x" % struct.unpack("<Q", struct.pack("<d", x))[0]


def layout(path):
    r = gguf.GGUFReader(path)
    return {
        "data_offset": int(r.data_offset),
        "alignment": int(r.alignment),
        "file_size": os.path.getsize(path),
        "tensors": [{
            "name": t.name, "type": int(t.tensor_type), "ne": [int(d) for d in t.shape],
            "offset": int(t.data_offset) - int(r.data_offset), "nbytes": int(t.n_bytes),
        } for t in r.tensors],
    }


def write_type_file(tname):
    path = os.path.join(HERE, f"{tname}.gguf")
    w = gguf.GGUFWriter(path, arch="fixture")
    w.add_string("fixture.type", tname)
    w.add_uint32("fixture.tensor_count", 0)  # replaced below
    tensors = tensors_for(tname)
    w.kv_data[0]["fixture.tensor_count"] = gguf.GGUFValue(len(tensors), V.UINT32)
    expected = []
    for name, shape, raw in tensors:
        if tname == "F32":
            w.add_tensor(name, raw.view(np.float32).reshape(shape))
        elif tname == "F16":
            w.add_tensor(name, raw.view(np.float16).reshape(shape))
        else:
            w.add_tensor(name, raw, raw_dtype=T[tname])
        expected.append(expected_f32(tname, raw))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    exp = np.concatenate(expected).astype("<f4")
    exp.tofile(os.path.join(HERE, f"{tname}.f32"))
    # Sanity: gguf-py's reader sees the same tensors and the same dequantization.
    r = gguf.GGUFReader(path)
    got = np.concatenate([expected_f32(tname, np.asarray(t.data).view(np.uint8)) for t in r.tensors])
    assert got.view(np.uint32).tobytes() == exp.view(np.uint32).tobytes(), tname
    return layout(path)


def write_metadata_file():
    path = os.path.join(HERE, "metadata.gguf")
    w = gguf.GGUFWriter(path, arch="fixture")
    w.add_custom_alignment(64)
    kv = w.add_key_value
    kv("m.u8", 255, V.UINT8)
    kv("m.i8", -128, V.INT8)
    kv("m.u16", 65535, V.UINT16)
    kv("m.i16", -32768, V.INT16)
    kv("m.u32", 4294967295, V.UINT32)
    kv("m.i32", -2147483648, V.INT32)
    kv("m.f32", 0.1, V.FLOAT32)
    kv("m.f32.neg_zero", -0.0, V.FLOAT32)
    kv("m.f32.inf", float("-inf"), V.FLOAT32)
    kv("m.u64", 18446744073709551615, V.UINT64)
    kv("m.i64", -9223372036854775808, V.INT64)
    kv("m.f64", 1.0 / 3.0, V.FLOAT64)
    kv("m.bool.true", True, V.BOOL)
    kv("m.bool.false", False, V.BOOL)
    kv("m.string", "héllo, wörld ✓ 🦙", V.STRING)
    kv("m.string.empty", "", V.STRING)
    kv("m.array.u8", [0, 1, 255], V.ARRAY, V.UINT8)
    kv("m.array.i8", [-128, 0, 127], V.ARRAY, V.INT8)
    kv("m.array.u16", [0, 65535], V.ARRAY, V.UINT16)
    kv("m.array.i16", [-32768, 32767, -1], V.ARRAY, V.INT16)
    kv("m.array.u32", [1, 2, 3, 4294967295], V.ARRAY, V.UINT32)
    kv("m.array.i32", [-1, 0, 2147483647], V.ARRAY, V.INT32)
    kv("m.array.f32", [1.5, -2.25, 1e-45], V.ARRAY, V.FLOAT32)
    kv("m.array.u64", [0, 18446744073709551615], V.ARRAY, V.UINT64)
    kv("m.array.i64", [-9223372036854775808, 9223372036854775807], V.ARRAY, V.INT64)
    kv("m.array.f64", [2.5, -1e300], V.ARRAY, V.FLOAT64)
    kv("m.array.bool", [True, False, True], V.ARRAY, V.BOOL)
    kv("m.array.string", ["<|endoftext|>", "", "Ġ t", "日本語", "a\nb"], V.ARRAY, V.STRING)
    kv("m.array.nested", [[1, 2], [3], [4, 5, 6]], V.ARRAY, V.ARRAY)
    w.add_tensor("a.weight", np.arange(3, dtype=np.float32))
    w.add_tensor("b.weight", (np.arange(10, dtype=np.float32) * 0.5).astype(np.float16).reshape(2, 5))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    r = gguf.GGUFReader(path)

    def render(field):
        types = [V(t) for t in field.types]
        tname = types[0].name if types[0] != V.ARRAY else "ARRAY[" + types[1].name + "]"
        return tname

    def value(ftype, raw):
        if ftype == V.FLOAT32:
            return "f32:" + hexf32(float(raw))
        if ftype == V.FLOAT64:
            return "f64:" + hexf64(float(raw))
        if ftype == V.BOOL:
            return bool(raw)
        if ftype == V.STRING:
            return bytes(raw).decode("utf-8")
        return int(raw)

    kvs = []
    for key, field in r.fields.items():
        if key.startswith("GGUF."):
            continue
        types = [V(t) for t in field.types]
        if types[0] == V.ARRAY and types[1] == V.ARRAY:
            # gguf-py flattens nested arrays: rebuild [[..], ..] from what was written
            assert key == "m.array.nested"
            kvs.append({"key": key, "type": "ARRAY[ARRAY]", "value": [[1, 2], [3], [4, 5, 6]]})
        elif types[0] == V.ARRAY:
            vals = [value(types[1], field.parts[i] if types[1] == V.STRING else field.parts[i][0]) for i in field.data]
            kvs.append({"key": key, "type": render(field), "value": vals})
        else:
            raw = field.parts[field.data[0]]
            kvs.append({"key": key, "type": render(field), "value": value(types[0], raw if types[0] == V.STRING else raw[0])})
    with open(os.path.join(HERE, "metadata.json"), "w") as f:
        json.dump({"version": 3, "kv": kvs}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return layout(path)


def main():
    files = {}
    for t in TYPES:
        files[f"{t}.gguf"] = write_type_file(t)
    files["metadata.gguf"] = write_metadata_file()
    with open(os.path.join(HERE, "fixtures.json"), "w") as f:
        json.dump({"generator": "Tests/Fixtures/gguf/make_fixtures.py", "gguf": "0.19.0",
                   "numpy": np.__version__, "files": files}, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(HERE, n)) for n in os.listdir(HERE))
    print(f"wrote {len(os.listdir(HERE))} files, {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
