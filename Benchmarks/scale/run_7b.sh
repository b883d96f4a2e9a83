#!/usr/bin/env bash
# 7B-scale numbers (issue 10, "Speed and scale"): a Llama-2-7B-shaped random model written by
# `qlora synth` (NF4, block 64, double quant, ~3.9 GB; under models/, git-ignored), then
#   1. inference (own process): streaming-read bandwidth, decode tokens/s vs the bandwidth bound,
#      prefill of 512 tokens;
#   2. training (own process, so its peak RSS is its own): one QLoRA step, r = 16 on all 7
#      projections, sequence 256: step time and peak resident memory.
# Writes Benchmarks/results/7b.md. Usage: Benchmarks/scale/run_7b.sh [threads]   (default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
threads="${1:-2}"
model=models/llama2-7b-synth-nf4
out=Benchmarks/results/7b.md
swift build -c release -Xswiftc -enable-testing --product qlora >/dev/null   # the flag set of make (one shared build)
swift build -c release -Xswiftc -enable-testing --product qlora-bench >/dev/null
bin=.build/release
if [ ! -f "$model/model.safetensors" ]; then
  mkdir -p models
  /usr/bin/time -f "synth: %e s, peak RSS %M KB" "$bin/qlora" synth --config Benchmarks/scale/llama2_7b_config.json -o "$model" --seed 7 2>&1 | tail -3
fi
tmp=$(mktemp -d)
/usr/bin/time -f "%e %M" -o "$tmp/inference.time" "$bin/qlora-bench" --scale "$model" --phase inference --threads "$threads" --json "$tmp/inference.json"
/usr/bin/time -f "%e %M" -o "$tmp/train.time" "$bin/qlora-bench" --scale "$model" --phase train --threads "$threads" --json "$tmp/train.json"
python3 - "$tmp" "$model" "$threads" "$out" <<'PY'
import json, os, platform, subprocess, sys, datetime
tmp, model, threads, out = sys.argv[1:]
inf, tr = json.load(open(f"{tmp}/inference.json")), json.load(open(f"{tmp}/train.json"))
def wall(n):
    s, kb = open(f"{tmp}/{n}.time").read().split()
    return float(s), int(kb) / 1024
size = os.path.getsize(f"{model}/model.safetensors")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
load = os.getloadavg()
lines = [
 "# 7B-scale numbers (Llama-2-7B shape, `qlora synth`, NF4 block 64 + double quant)", "",
 f"Run {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC by `Benchmarks/scale/run_7b.sh {threads}`; {cpu}, {os.cpu_count()} cores, "
 f"load average {load[0]:.2f} at the end. The machine is shared with other engineers' builds and tests: every number is ONE sample "
 "and may be slowed by them (the bandwidth is measured in the same process right before decoding, and again after).", "",
 f"Model: `{model}` — {size / 1e9:.2f} GB model.safetensors (4-bit projections, f16 embeddings / lm_head / norms, "
 "f32 at load), config `Benchmarks/scale/llama2_7b_config.json`.", "",
 "| measure | value |", "|---|---|",
 f"| streaming read (512 MiB, {threads} threads) before / after decode | {inf['stream_read_gb_s']:.2f} / {inf['stream_read_after_gb_s']:.2f} GB/s |",
 f"| weight bytes per decoded token | {inf['weight_bytes_per_token'] / 1e9:.3f} GB |",
 f"| decode bandwidth bound | {inf['decode_bound_tokens_per_s']:.3f} tokens/s |",
 f"| **decode** (greedy, 8 tokens after 16) | **{inf['decode_tokens_per_s']:.3f} tokens/s = {inf['decode_fraction_of_bound']:.2f}x the bound** (goal >= 0.85x) |",
 f"| **prefill 512 tokens** | **{inf['prefill_512_tokens_per_s']:.2f} tokens/s** ({512 / inf['prefill_512_tokens_per_s']:.1f} s) |",
 f"| inference process: load time, peak RSS | {inf['load_s']:.1f} s, {wall('inference')[1] / 1024:.2f} GiB |",
 f"| **QLoRA train step** (r=16, all 7 projections, seq 256, AdamW) | **{tr['step_s']:.1f} s** ({tr['step_tokens_per_s']:.2f} tokens/s), loss {tr['loss']:.4f} |",
 f"| train process: peak RSS during the step (model + activations + LoRA state) | **{tr['step_peak_rss_mb'] / 1024:.2f} GiB** (goal < 8 GiB) |",
 f"| train process: peak RSS over the whole run (load + compile + step) | {wall('train')[1] / 1024:.2f} GiB |",
 f"| train process: load, compile | {tr['load_s']:.1f} s, {tr['compile_s']:.1f} s |",
 "", "Raw: inference " + json.dumps(inf), "", "Raw: train " + json.dumps(tr), ""]
open(out, "w").write("\n".join(lines))
print("\n".join(lines))
PY
rm -rf "$tmp"
