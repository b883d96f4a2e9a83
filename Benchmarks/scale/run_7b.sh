#!/usr/bin/env bash
# 7B-scale numbers (issue 10, "Speed and scale"): a Llama-2-7B-shaped random model written by
# `qlora synth` (NF4, block 64, double quant, ~3.9 GB; under models/, git-ignored), then
#   1. inference (own process): prefill of 512 tokens, then decode tokens/s vs the bandwidth bound
#      in interleaved rounds (read, decode, read, …; ROUNDS, default 5);
#   2. training (own process, so its peak RSS is its own): one QLoRA step, r = 16 on all 7
#      projections, sequence 256: step time and peak resident memory.
# Writes Benchmarks/results/7b.md (raw JSON per phase in Benchmarks/results/raw/, git-ignored).
# Usage: [ROUNDS=5] Benchmarks/scale/run_7b.sh [threads] [phases]   (defaults: 2, "inference train"; a phase
# not run is taken from its last raw JSON)
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
phases="${2:-inference train}"
tmp=Benchmarks/results/raw/7b
mkdir -p "$tmp"
for phase in $phases; do
  /usr/bin/time -f "%e %M" -o "$tmp/$phase.time" "$bin/qlora-bench" --scale "$model" --phase "$phase" --threads "$threads" --rounds "${ROUNDS:-5}" --json "$tmp/$phase.json"
  date -u +%H:%M > "$tmp/$phase.when"
done
python3 - "$tmp" "$model" "$threads" "$out" <<'PY'
import json, os, platform, subprocess, sys, datetime
tmp, model, threads, out = sys.argv[1:]
inf, tr = json.load(open(f"{tmp}/inference.json")), json.load(open(f"{tmp}/train.json"))
def wall(n):
    s, kb = open(f"{tmp}/{n}.time").read().split()
    return float(s), int(kb) / 1024
when = {p: open(f"{tmp}/{p}.when").read().strip() for p in ("inference", "train")}
cores = lambda d, k: f"{d[k]:.2f}" if k in d else "not measured"
size = os.path.getsize(f"{model}/model.safetensors")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
load = os.getloadavg()
lines = [
 "# 7B-scale numbers (Llama-2-7B shape, `qlora synth`, NF4 block 64 + double quant)", "",
 f"Run {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC by `Benchmarks/scale/run_7b.sh {threads}`; {cpu}, {os.cpu_count()} cores, "
 f"load average {load[0]:.2f} at the end. The machine is shared with other engineers' builds and tests: every number is ONE sample "
 "and may be slowed by them. Decode is measured in rounds interleaved with streaming reads in the same process (read, decode, "
 "read, …): each round's bound uses the mean of the reads right before and after it, and the reported fraction is the median "
 "of the rounds' ratios. "
 "'cores used' = the process's CPU seconds / wall seconds during the measure (2.00 = both cores throughout): below 2 the "
 f"machine was busy with other work. Inference phase finished {when['inference']} UTC, train phase {when['train']} UTC.", "",
 f"Model: `{model}` — {size / 1e9:.2f} GB model.safetensors (4-bit projections, f16 embeddings / lm_head / norms, "
 "f32 at load), config `Benchmarks/scale/llama2_7b_config.json`.", "",
 "| measure | value |", "|---|---|",
 f"| streaming read (512 MiB, {threads} threads), median (min–max) of {int(inf['rounds']) + 1} reads | {inf['stream_read_gb_s']:.2f} ({inf['stream_read_min_gb_s']:.2f}–{inf['stream_read_max_gb_s']:.2f}) GB/s |",
 f"| weight bytes per decoded token | {inf['weight_bytes_per_token'] / 1e9:.3f} GB |",
 f"| decode bandwidth bound at the median read | {inf['decode_bound_tokens_per_s']:.3f} tokens/s |",
 f"| **decode** (greedy, 8 tokens after 16), median (min–max) of {int(inf['rounds'])} rounds | **{inf['decode_tokens_per_s']:.3f}** ({inf['decode_min_tokens_per_s']:.3f}–{inf['decode_max_tokens_per_s']:.3f}) tokens/s (cores used {cores(inf, 'decode_run_cores_used')}) |",
 f"| **decode / bound**, median (min–max) of the rounds' ratios | **{inf['decode_fraction_of_bound']:.2f}x** ({inf['decode_fraction_min']:.2f}–{inf['decode_fraction_max']:.2f}; goal >= 0.85x); each: {', '.join(f'{x:.2f}' for x in inf['decode_fraction_each'])} |",
 f"| **prefill 512 tokens** | **{inf['prefill_512_tokens_per_s']:.2f} tokens/s** ({512 / inf['prefill_512_tokens_per_s']:.1f} s; cores used {cores(inf, 'prefill_cores_used')}) |",
 f"| inference process: load time, peak RSS | {inf['load_s']:.1f} s, {wall('inference')[1] / 1024:.2f} GiB |",
 f"| **QLoRA train step** (r=16, all 7 projections, seq 256, AdamW) | **{tr['step_s']:.1f} s** ({tr['step_tokens_per_s']:.2f} tokens/s; cores used {cores(tr, 'step_cores_used')}), loss {tr['loss']:.4f} |",
 f"| train process: peak RSS during the step (model + activations + LoRA state) | **{tr['step_peak_rss_mb'] / 1024:.2f} GiB** (goal < 8 GiB) |",
 f"| train process: peak RSS over the whole run (load + compile + step) | {wall('train')[1] / 1024:.2f} GiB |",
 f"| train process: load, compile | {tr['load_s']:.1f} s, {tr['compile_s']:.1f} s |",
 "", "Raw: inference " + json.dumps(inf), "", "Raw: train " + json.dumps(tr), ""]
open(out, "w").write("\n".join(lines))
print("\n".join(lines))
PY
