"""SmolLM2-135M peers on CPU: transformers (f32 weights dequantized from the GGUF), transformers +
bitsandbytes NF4 + PEFT for a training step, and llama.cpp (llama-cpp-python) on the same GGUF.

  python smollm2_peer.py --gguf models/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2 [--json OUT]

Measured (median of --runs after a warm-up):
  hf-prefill      forward of one 128-token sequence, no grad           -> tokens/s
  hf-decode       greedy decode with the KV cache, 32 new tokens        -> tokens/s
  bnb-prefill / bnb-decode   the same with the 7 projections as bitsandbytes Linear4bit (NF4, block
                  64, double quant, compute dtype f32): transformers + bitsandbytes inference
  bnb-train       NF4 (block 64, double quant) base + PEFT LoRA r=16 on all 7 projections,
                  sequence 256, batch 1: forward + causal-LM loss + backward + AdamW step -> tokens/s
  bnb-train-bf16  the same step with Linear4bit(compute_dtype=torch.bfloat16), QLoRA's usual setting
                  (the 4-bit matmuls forward and backward in bf16; LoRA, norms, lm_head, loss in f32)
                  -> tokens/s; compare with `qlora-bench --llama ... --compute-type bf16`
  llamacpp-prefill / llamacpp-decode   llama.cpp on the GGUF as shipped (Q4_1), same token counts
"""
import argparse, json, os, statistics, sys, time

import torch


def median_s(fn, runs):
    fn()
    xs = []
    for _ in range(runs):
        t0 = time.perf_counter(); fn(); xs.append(time.perf_counter() - t0)
    return statistics.median(xs)


def hf_model(gguf):
    from transformers import AutoModelForCausalLM
    d, f = os.path.split(os.path.abspath(gguf))
    return AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()


def to_nf4(model, compute_dtype=torch.float32):
    import bitsandbytes as bnb
    for name, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, torch.nn.Linear) and child_name.endswith("_proj"):
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=compute_dtype, compress_statistics=True, quant_type="nf4",
                                      quant_storage=torch.uint8)
                q.weight = bnb.nn.Params4bit(child.weight.data.clone(), requires_grad=False, quant_type="nf4",
                                             blocksize=64, compress_statistics=True)
                if child.bias is not None:
                    q.bias = torch.nn.Parameter(child.bias.data.clone(), requires_grad=False)
                setattr(mod, child_name, q.to("cpu"))
    return model


def prefill_decode(m, prompt, runs):
    """(prefill tokens/s of the 128-token prompt, greedy decode tokens/s of 32 tokens after 16).
    inference_mode: bitsandbytes takes its CPU inference kernel only there (under no_grad it
    dequantizes every weight per call)."""
    with torch.inference_mode():
        prefill = 128 / median_s(lambda: m(prompt), runs)
        short = prompt[:, :16]
        def dec_once():
            # Greedy decode with the KV cache, one token per forward; only the 32 steps are timed.
            out = m(short, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            t0 = time.perf_counter()
            for _ in range(32):
                out = m(nxt, past_key_values=past, use_cache=True)
                past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            return time.perf_counter() - t0
        dec_once()
        return prefill, 32 / statistics.median([dec_once() for _ in range(max(1, runs // 2))])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gguf", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--skip", default="", help="comma list of cases to skip: hf, bnb-infer, bnb, bnb-bf16, llamacpp")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    skip = set(filter(None, a.skip.split(",")))
    res = {"threads": a.threads, "torch": torch.__version__}
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 49152, (1, 128), generator=g)
    if "hf" not in skip:
        m = hf_model(a.gguf)
        res["hf-prefill"], res["hf-decode"] = prefill_decode(m, prompt, a.runs)
        del m
    if "bnb-infer" not in skip:
        # transformers + bitsandbytes for inference: the same NF4 conversion as the training step,
        # compute dtype f32 (our f32-exact mode), eval mode, no grad.
        import bitsandbytes
        res["bitsandbytes"] = bitsandbytes.__version__
        m = to_nf4(hf_model(a.gguf), torch.float32)
        res["bnb-prefill"], res["bnb-decode"] = prefill_decode(m, prompt, a.runs)
        del m
    for key, dtype in (("bnb", torch.float32), ("bnb-bf16", torch.bfloat16)):
        if key in skip:
            continue
        from peft import LoraConfig, get_peft_model
        import bitsandbytes, peft
        res["bitsandbytes"], res["peft"] = bitsandbytes.__version__, peft.__version__
        m = to_nf4(hf_model(a.gguf), dtype)
        m = get_peft_model(m, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=[
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
        m.train()
        opt = torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=1e-4)
        ids = torch.randint(0, 49152, (1, 256), generator=torch.Generator().manual_seed(1))  # the same step for both
        def step():
            loss = m(input_ids=ids, labels=ids).loss
            loss.backward(); opt.step(); opt.zero_grad()
        res["bnb-train" if dtype == torch.float32 else "bnb-train-bf16"] = 256 / median_s(step, max(1, a.runs // 2))
        del m
    if "llamacpp" not in skip:
        try:
            from llama_cpp import Llama
            import llama_cpp
            res["llama_cpp_python"] = llama_cpp.__version__
            llm = Llama(model_path=a.gguf, n_threads=a.threads, n_threads_batch=a.threads, n_ctx=512,
                        n_batch=512, verbose=False)
            toks = prompt[0].tolist()
            def pre():
                llm.reset(); llm.eval(toks)
            res["llamacpp-prefill"] = 128 / median_s(pre, a.runs)
            def dec_once():
                # Only the 32 one-token steps are timed (subtracting a separately timed prefill could
                # go negative on a noisy machine).
                llm.reset(); llm.eval(toks[:16])
                t0 = time.perf_counter()
                for i in range(32):
                    llm.eval([toks[16 + i]])
                return time.perf_counter() - t0
            dec_once()
            res["llamacpp-decode"] = 32 / statistics.median([dec_once() for _ in range(max(1, a.runs // 2))])
        except ImportError:
            res["llamacpp"] = "llama-cpp-python not installed"
    line = json.dumps(res)
    print(line)
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            f.write(line + "\n")
        os.replace(a.json + ".tmp", a.json)


if __name__ == "__main__":
    main()
