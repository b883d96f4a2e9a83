"""One QLoRA training step on CPU with bitsandbytes 0.50.2 + PEFT 0.21.2: forward, mse loss,
backward and torch.optim.AdamW of one 4096->11008 Linear4bit (NF4, double quant, block 64) with a
rank-16 LoRA on M = 128 tokens -- the case `qlora-bench --train-step` times. Prints the median step
time, tokens/s and the peak resident memory of the steps (VmHWM reset after setup).
    python train_step_peer.py [--threads 2] [--runs 5]
"""
import argparse
import statistics
import time

import torch
import bitsandbytes as bnb
from peft import LoraConfig, get_peft_model


class Wrapper(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.proj = layer

    def forward(self, x):
        return self.proj(x)


def peak_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return -1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    k, n, m, r = 4096, 11008, 128, 16
    torch.manual_seed(0)
    dense = torch.nn.Linear(k, n, bias=True)
    q = bnb.nn.Linear4bit(k, n, bias=True, compute_dtype=torch.float32, compress_statistics=True,
                          quant_type="nf4", quant_storage=torch.uint8)
    q.weight = bnb.nn.Params4bit(dense.weight.data.clone(), requires_grad=False, quant_type="nf4",
                                 blocksize=64, compress_statistics=True)
    q.bias = torch.nn.Parameter(dense.bias.data.clone(), requires_grad=False)
    q = q.to("cpu")
    del dense
    model = get_peft_model(Wrapper(q), LoraConfig(r=r, lora_alpha=32, target_modules=["proj"], lora_dropout=0.0))
    with torch.no_grad():
        model.base_model.model.proj.lora_B["default"].weight.normal_(0, 0.02)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randn(m, k)
    target = torch.randn(m, n)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()

    step()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    samples = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        step()
        samples.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(samples)
    print(f"bnb+peft train-step 4096x11008 nf4 r=16 M=128 threads={args.threads}: {ms:.1f} ms, "
          f"{m / (ms / 1000):.0f} tokens/s, peak RSS {peak_mb():.0f} MB (f32 base weight {n * k * 4 / 2**20:.0f} MB)")


if __name__ == "__main__":
    main()
