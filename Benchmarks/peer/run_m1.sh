#!/usr/bin/env bash
# Issue 10's one-layer decode goals, measured as ratios within one run on a shared machine:
# the f32-exact fused NF4+DQ kernel at M = 1 (4096→11008, LoRA r = 16) against (a) a streaming
# read of its bytes and (b) bitsandbytes' CPU inference kernel (bnb-infer: Linear4bit + PEFT in
# eval mode, inference_mode, compute dtype f32). ROUNDS rounds alternate our process
# (`qlora-bench --m1`, itself 3 interleaved rounds of kernel / same-size read / DRAM read) and
# bitsandbytes' (peer.py --m1); each round's ratio pairs the two neighbouring measurements.
#   [ROUNDS=5] [THREADS=2] [PEER_VENV=…] Benchmarks/peer/run_m1.sh   -> Benchmarks/results/m1.md
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
rounds="${ROUNDS:-5}" threads="${THREADS:-2}"
venv="${PEER_VENV:-$here/.venv}"
[ -x "$venv/bin/python" ] || { echo "no peer venv at $venv: run Benchmarks/peer/run_peer.sh once (it creates it) or set PEER_VENV" >&2; exit 1; }
swift build -c release -Xswiftc -enable-testing --product qlora-bench >/dev/null   # the flag set of make (one shared build)
raw=Benchmarks/results/raw/m1
mkdir -p "$raw"
rm -f "$raw"/*.json
for r in $(seq 1 "$rounds"); do
  .build/release/qlora-bench --m1 --threads "$threads" --rounds 3 --json "$raw/ours$r.json" >/dev/null
  "$venv/bin/python" "$here/peer.py" --m1 --threads "$threads" > "$raw/bnb$r.json"
  sleep 0.3   # let OpenMP / torch worker threads go idle before the next process
done
python3 - "$raw" "$rounds" "$threads" <<'PY'
import json, os, statistics, sys, datetime
raw, rounds, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rows, vs_read, vs_dram, vs_bnb, paired_gain = [], [], [], [], []
for r in range(1, rounds + 1):
    o = json.load(open(f"{raw}/ours{r}.json")); b = json.load(open(f"{raw}/bnb{r}.json"))
    k = statistics.median(o["kernel_ms"])
    kb = statistics.median(o["kernel_bnb_order_ms"])
    vs_read.append(o["kernel_over_read_same_size"]); vs_dram.append(o["kernel_over_read_dram"]); vs_bnb.append(k / b["bnb_infer_ms"])
    paired_gain.append(kb / k)
    rows.append(f"| {r} | {k:.3f} | {kb:.3f} | {statistics.median(o['read_same_size_ms']):.3f} | {statistics.median(o['read_dram_ms']):.3f} | "
                f"{b['bnb_infer_ms']:.3f} | {vs_read[-1]:.2f} | {vs_dram[-1]:.2f} | {vs_bnb[-1]:.2f} |")
med = statistics.median
lines = ["# One-layer decode kernel (M = 1) vs a streaming read and bitsandbytes", "",
  f"Run {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC by `Benchmarks/peer/run_m1.sh` (ROUNDS={rounds}, THREADS={threads}); {cpu}, "
  f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end; bitsandbytes {b['bitsandbytes']}, torch {b['torch']}.", "",
  "4096→11008 NF4 + double quant, block 64, LoRA r = 16, one input row; our f32-exact fused kernel (`cq_fused_linear`) "
  "against a streaming read of its bytes from a buffer of the same size (last-level cache, as the weight when the kernel "
  "runs repeatedly) and from a 256 MiB buffer (DRAM), measured in interleaved rounds inside one process, and against "
  "bitsandbytes' CPU inference kernel (bnb-infer, compute dtype f32) run in the next process. Times are medians; each "
  "round's ratios pair neighbouring measurements. 'ours' runs over the weight as the package holds it in memory (the paired "
  "nibble order, docs/llama.md); 'ours, bnb order' is the same kernel family over bitsandbytes' byte order, for comparison.", "",
  "| round | ours ms | ours, bnb order ms | read same size ms | read 256 MiB ms | bnb-infer ms | ours / read (same size) | ours / read (DRAM) | ours / bnb |",
  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *rows, "",
  f"**Median of the rounds: ours / read (same size) {med(vs_read):.2f}x (goal <= 1.3x), ours / read (DRAM) {med(vs_dram):.2f}x, "
  f"ours / bitsandbytes {med(vs_bnb):.2f}x (goal <= 1.0x).** The paired order is {med(paired_gain):.2f}x as fast as bitsandbytes' order.", ""]
open("Benchmarks/results/m1.md.tmp", "w").write("\n".join(lines)); os.replace("Benchmarks/results/m1.md.tmp", "Benchmarks/results/m1.md")
print("\n".join(lines))
PY
