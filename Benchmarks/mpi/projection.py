#!/usr/bin/env python3
"""Projected data-parallel step time and efficiency (docs/distributed.md), from a ring all-reduce
model and the fixed-order chain that `qlora train` uses, for SmolLM2-135M and a 7B Llama.

    python3 Benchmarks/mpi/projection.py [--smollm2-step S] [--7b-step S] [--alpha US]

Compute per machine and step: one 256-token micro-batch (the measured / estimated seconds below).
No overlap of communication and compute (qlora reduces after the backward)."""
import argparse

def lora_floats(layers, hidden, inter, kv, r=16):
    # r * (in + out) per projection: q, k, v, o, gate, up, down
    per = (hidden + hidden) + (hidden + kv) * 2 + (hidden + hidden) + 3 * (hidden + inter)
    return layers * r * per

MODELS = {
    "SmolLM2-135M": lora_floats(30, 576, 1536, 192),
    "Llama-7B": lora_floats(32, 4096, 11008, 4096),
}

def ring(n, size, bw, alpha):
    """Ring all-reduce: reduce-scatter + all-gather, 2(N-1) steps of size/N bytes."""
    return 0.0 if n == 1 else 2 * (n - 1) * (alpha + size / n / bw)

def chain(n, size, bw, alpha, chunk=1 << 20):
    """qlora's ordered sum: a pipelined chain (N-1 hops, C chunks) + a pipelined broadcast."""
    if n == 1:
        return 0.0
    c = max(1, -(-size // chunk))
    piece = min(size, chunk)
    return 2 * (n - 1 + c - 1) * (alpha + piece / bw)

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--smollm2-step", type=float, default=256 / 40.4,
                   help="seconds per 256-token micro-batch (Benchmarks/results/smollm2.md: 40.4 tok/s, 2 threads)")
    p.add_argument("--7b-step", dest="b7", type=float, default=2 * 143 * 0.256,
                   help="seconds per 256 tokens: 143 x the measured 4096x11008 layer step (256 ms / 128 tokens)")
    p.add_argument("--alpha", type=float, default=50.0, help="per-message latency, microseconds (TCP)")
    a = p.parse_args()
    step = {"SmolLM2-135M": a.smollm2_step, "Llama-7B": a.b7}
    alpha = a.alpha * 1e-6
    for name, floats in MODELS.items():
        size = 4 * floats
        print(f"\n{name}: {floats:,} LoRA floats = {size / 1e6:.1f} MB per all-reduce; compute {step[name]:.2f} s per micro-batch\n")
        print("| machines | 10 Gbit/s ring | 10 Gbit/s ordered (qlora) | eff. | 100 Gbit/s ring | 100 Gbit/s ordered (qlora) | eff. |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for n in [2, 4, 8, 16, 32, 64]:
            row = [str(n)]
            for gbit in [10, 100]:
                bw = gbit * 1e9 / 8
                r, c = ring(n, size, bw, alpha), chain(n, size, bw, alpha)
                eff = step[name] / (step[name] + c)
                row += [f"{1e3 * r:.1f} ms", f"{1e3 * c:.1f} ms", f"{100 * eff:.1f}%"]
            print("| " + " | ".join(row) + " |")

if __name__ == "__main__":
    main()
