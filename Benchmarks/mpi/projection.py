#!/usr/bin/env python3
"""Projected data-parallel step time and efficiency (docs/distributed.md), from a ring all-reduce
model and the fixed-order chain that `qlora train` uses, for SmolLM2-135M and a 7B Llama.

    python3 Benchmarks/mpi/projection.py [--smollm2-step S] [--7b-step S] [--alpha US]

Compute per machine and step: one 256-token micro-batch (the measured / estimated seconds below).
Without overlap the whole ordered reduction follows the backward; with the overlap (the default)
the buckets are reduced while the backward runs, so what the step still waits for is the last
bucket's chain and broadcast plus whatever of the reduction did not fit in the backward
(--backward-share of the step)."""
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

def overlapped(n, size, bw, alpha, backward, bucket=2 << 20):
    """What stays exposed with the overlap: the last bucket after the backward, and the rest of
    the reduction beyond the backward's duration. Each rank's communication thread takes one
    bucket after another (its chain, then its broadcast), so every bucket pays the pipeline fill."""
    if n == 1:
        return 0.0
    buckets = max(1, -(-size // bucket))
    last = chain(n, min(size, bucket), bw, alpha)
    return last + max(0.0, buckets * last - last - backward)

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--smollm2-step", type=float, default=256 / 40.4,
                   help="seconds per 256-token micro-batch (Benchmarks/results/smollm2.md: 40.4 tok/s, 2 threads)")
    p.add_argument("--7b-step", dest="b7", type=float, default=2 * 143 * 0.256,
                   help="seconds per 256 tokens: 143 x the measured 4096x11008 layer step (256 ms / 128 tokens)")
    p.add_argument("--alpha", type=float, default=50.0, help="per-message latency, microseconds (TCP)")
    p.add_argument("--backward-share", type=float, default=2 / 3, help="the backward's share of a step (the time the overlap can use)")
    a = p.parse_args()
    step = {"SmolLM2-135M": a.smollm2_step, "Llama-7B": a.b7}
    alpha = a.alpha * 1e-6
    for name, floats in MODELS.items():
        size = 4 * floats
        print(f"\n{name}: {floats:,} LoRA floats = {size / 1e6:.1f} MB per all-reduce; compute {step[name]:.2f} s per micro-batch\n")
        print("| machines | link | ring | ordered, after the backward | eff. | ordered, overlapped (exposed) | eff. |")
        print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
        for n in [2, 4, 8, 16, 32, 64]:
            for gbit in [10, 100]:
                bw = gbit * 1e9 / 8
                r, c = ring(n, size, bw, alpha), chain(n, size, bw, alpha)
                o = overlapped(n, size, bw, alpha, a.backward_share * step[name])
                eff, eff_o = step[name] / (step[name] + c), step[name] / (step[name] + o)
                print(f"| {n} | {gbit} Gbit/s | {1e3 * r:.1f} ms | {1e3 * c:.1f} ms | {100 * eff:.1f}% | {1e3 * o:.1f} ms | {100 * eff_o:.2f}% |")

if __name__ == "__main__":
    main()
