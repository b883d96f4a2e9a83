"""Writes the SmolLM2 comparison (Markdown, stdout) from run_smollm2.sh's per-round JSON files:
  python3 smollm2_report.py WORKDIR ROUNDS THREADS
Ratios are ours / peer within each round (same load), then the median over rounds."""
import json, os, platform, statistics, sys

work, rounds, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ours = [json.load(open(os.path.join(work, f"ours.{i}.json"))) for i in range(1, rounds + 1)]
peer = [json.load(open(os.path.join(work, f"peer.{i}.json"))) for i in range(1, rounds + 1)]
# bf16-compute training step (qlora-bench --compute-type bf16), when the run made it
for i, o in enumerate(ours, 1):
    f = os.path.join(work, f"oursbf16.{i}.json")
    if os.path.exists(f):
        o["train-step-256-bf16"] = json.load(open(f))["train-step-256"]
cases = [  # (what, our key, peer key)
    ("prefill 128 tokens vs llama.cpp (same GGUF, Q4_1)", "prefill-128", "llamacpp-prefill"),
    ("decode vs llama.cpp (same GGUF, Q4_1)", "decode", "llamacpp-decode"),
    ("prefill 128 tokens vs transformers f32", "prefill-128", "hf-prefill"),
    ("decode vs transformers f32", "decode", "hf-decode"),
    ("prefill 128 tokens vs transformers + bitsandbytes NF4 (compute f32)", "prefill-128", "bnb-prefill"),
    ("decode vs transformers + bitsandbytes NF4 (compute f32)", "decode", "bnb-decode"),
    ("QLoRA training step vs bitsandbytes + PEFT", "train-step-256", "bnb-train"),
    ("QLoRA training step, bf16 compute, vs bitsandbytes (compute_dtype bf16) + PEFT", "train-step-256-bf16", "bnb-train-bf16"),
    ("QLoRA training step, ours f32 vs bitsandbytes (compute_dtype bf16) + PEFT", "train-step-256", "bnb-train-bf16"),
]
lines = [
    "# SmolLM2-135M-Instruct: qlora vs llama.cpp, transformers, bitsandbytes + PEFT",
    "",
    f"`Benchmarks/peer/run_smollm2.sh`: {rounds} rounds, {threads} threads, ours and the peers interleaved on a shared "
    f"machine ({platform.machine()}, {os.cpu_count()} CPUs). Tokens/s, medians within a run; ratio = ours / peer per round "
    "(> 1: we are faster), the median over rounds. Ours: NF4 (block 64, double quant) converted from the GGUF, "
    "f32-exact on-the-fly mode. Prefill: one 128-token prompt; decode: 32 greedy tokens after 16; training: LoRA r = 16 "
    "on all 7 projections, sequence 256, forward + loss + backward + AdamW.",
    "",
    f"Peers: torch {peer[0].get('torch')}, bitsandbytes {peer[0].get('bitsandbytes')}, peft {peer[0].get('peft')}, "
    f"llama-cpp-python {peer[0].get('llama_cpp_python')}.",
    "",
    "| case | ours tok/s | peer tok/s | ratio (median) | ratios per round |",
    "| --- | ---: | ---: | ---: | --- |",
]
for what, k, pk in cases:
    if not all(k in o for o in ours) or not all(isinstance(p.get(pk), (int, float)) for p in peer):
        lines.append(f"| {what} | – | – | – | not measured |")
        continue
    ratios = [o[k] / p[pk] for o, p in zip(ours, peer)]
    lines.append(f"| {what} | {statistics.median(o[k] for o in ours):.1f} | {statistics.median(p[pk] for p in peer):.1f} | "
                 f"**{statistics.median(ratios):.2f}×** | {', '.join(f'{r:.2f}' for r in ratios)} |")
print("\n".join(lines))
