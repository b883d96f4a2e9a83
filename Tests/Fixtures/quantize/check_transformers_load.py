"""Loads a directory written by `qlora quantize SmolLM2-135M-Instruct.Q4_1.gguf -o DIR` with
transformers + bitsandbytes exactly as a user would (AutoModelForCausalLM.from_pretrained(DIR), no
extra arguments), and checks it against ../shared/reference/smollm2 (the NF4 conversion made by
transformers + bitsandbytes from the same GGUF):
  - every 4-bit weight's quant state as bitsandbytes reconstructs it dequantizes to the reference
    canonical NF4 weight (sha256 of the dequantized float32 in nf4/tensor_sha256.json);
  - the last-position logits of the three reference prompts equal nf4/<prompt>.last_logits.f32
    (max |diff| / max |logit| reported; the reference's own tolerance is 1e-4 relative). They are
    computed in train mode (dropout is 0), the mode of the reference's own cross-check
    (checks.bnb_linear4bit_train_mode_last_logits_max_abs_diff_vs_nf4_reference = 0): in eval mode
    bitsandbytes 0.50.2 on CPU switches Linear4bit to another inference kernel whose rounding
    differs from the reference's float32 matmul (reported too, as "eval_mode_relative");
  - the tokenizer saved in DIR encodes the reference prompts' rendered text to their input_ids.
Run ONCE by hand (tests never run Python):
  /tmp/torchvenv/bin/python Tests/Fixtures/quantize/check_transformers_load.py DIR ../shared/reference/smollm2
Prints one JSON object; the result is recorded in docs/quantize.md."""
import hashlib, json, sys
import numpy as np
import torch
import bitsandbytes as bnb
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

out_dir, ref = sys.argv[1], sys.argv[2]
model = AutoModelForCausalLM.from_pretrained(out_dir, attn_implementation="eager")
model.train()  # dropout 0: train mode only selects bitsandbytes' dequantize + float32 matmul path
hashes = json.load(open(f"{ref}/nf4/tensor_sha256.json"))["tensors"]
modules = dict(model.named_modules())
dequant_equal, n4 = 0, 0
for name, h in hashes.items():
    m = modules[name[: -len(".weight")]]
    assert isinstance(m, bnb.nn.Linear4bit), (name, type(m))
    w = bnb.functional.dequantize_4bit(m.weight.data, m.weight.quant_state).float().contiguous()
    n4 += 1
    dequant_equal += hashlib.sha256(w.numpy().tobytes()).hexdigest() == h["sha256_dequant_f32"]

outputs = json.load(open(f"{ref}/nf4/outputs.json"))
tok = AutoTokenizer.from_pretrained(out_dir)
results = []
with torch.no_grad():
    for p in outputs["prompts"]:
        ids = torch.tensor([p["input_ids"]])
        logits = model(ids).logits[0, -1].float().numpy()
        expected = np.fromfile(f"{ref}/{p['last_logits_file']}", dtype="<f4")
        diff = float(np.abs(logits - expected).max())
        results.append({"prompt": p["name"], "max_abs_diff": diff, "relative": diff / float(np.abs(expected).max()),
                        "argmax_equal": int(logits.argmax()) == int(expected.argmax()),
                        "tokenizer_ids_equal": tok(p["rendered"], add_special_tokens=False).input_ids == p["input_ids"]})
    # Last: bitsandbytes repacks the weights for its CPU inference kernel on the first eval forward.
    model.eval()
    for p, r in zip(outputs["prompts"], results):
        expected = np.fromfile(f"{ref}/{p['last_logits_file']}", dtype="<f4")
        logits = model(torch.tensor([p["input_ids"]])).logits[0, -1].float().numpy()
        r["eval_mode_relative"] = float(np.abs(logits - expected).max()) / float(np.abs(expected).max())
print(json.dumps({"transformers": transformers.__version__, "bitsandbytes": bnb.__version__, "torch": torch.__version__,
                  "linear4bit_modules": n4, "dequantized_weights_equal_reference": dequant_equal,
                  "embed_dtype": str(model.model.embed_tokens.weight.dtype), "lm_head_tied": model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(),
                  "prompts": results}, indent=1))
