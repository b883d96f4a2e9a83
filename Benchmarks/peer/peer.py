"""bitsandbytes / PEFT / torch timings on the qlora-bench shapes (CPU).

Cases per (in x out, M, threads):
  bnb-train   Linear4bit (NF4, double quant, block 64) + PEFT LoRA r=16, train mode, forward only
  bnb-infer   the same layer in eval mode under torch.inference_mode (bnb's CPU inference kernel)
  torch-f32   torch.nn.functional.linear on the dequantized f32 weight (+ the LoRA term)
Median of N runs after a warm-up, like qlora-bench.
"""
import argparse
import platform
import statistics
import time

import torch
import bitsandbytes as bnb
from peft import LoraConfig, get_peft_model


def median_ms(fn, runs):
    fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


class Wrapper(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.proj = layer

    def forward(self, x):
        return self.proj(x)


def build(k, n):
    torch.manual_seed(0)
    dense = torch.nn.Linear(k, n, bias=True)
    q = bnb.nn.Linear4bit(k, n, bias=True, compute_dtype=torch.float32, compress_statistics=True,
                          quant_type="nf4", quant_storage=torch.uint8)
    q.weight = bnb.nn.Params4bit(dense.weight.data.clone(), requires_grad=False, quant_type="nf4",
                                 blocksize=64, compress_statistics=True)
    q.bias = torch.nn.Parameter(dense.bias.data.clone())
    q = q.to("cpu")
    model = get_peft_model(Wrapper(q), LoraConfig(r=16, lora_alpha=32, target_modules=["proj"], lora_dropout=0.0))
    w = bnb.functional.dequantize_4bit(q.weight.data, q.weight.quant_state).float()
    lora = model.base_model.model.proj
    a = lora.lora_A["default"].weight.detach()
    b = torch.randn(n, 16) * 0.02
    return model, w, a, b, dense.bias.data.clone()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--output", default="peer.md")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--m1", action="store_true",
                   help="only bnb's inference kernel at 4096x11008, M = 1 (run_m1.sh): print one JSON line")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=21)
    args = p.parse_args()
    if args.m1:
        m1(args.threads, args.runs)
        return
    shapes = [(4096, 11008)] if args.quick else [(4096, 4096), (4096, 11008)]
    rows_m = [1, 16, 128] if args.quick else [1, 4, 16, 64, 128, 512]
    runs = 3 if args.quick else 5
    lines = ["# peer timings (bitsandbytes %s, peft, torch %s)" % (bnb.__version__, torch.__version__), "",
             "- %s, %s" % (platform.processor() or platform.machine(), platform.platform()), "",
             "| case | in×out | M | threads | ms |", "|---|---|---:|---:|---:|"]
    for k, n in shapes:
        model, w, a, b, bias = build(k, n)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for m in rows_m:
                x = torch.randn(m, k)
                model.train()
                t_train = median_ms(lambda: model(x), runs)
                model.eval()

                def infer():
                    with torch.inference_mode():
                        model(x)
                t_infer = median_ms(infer, runs)

                def f32():
                    with torch.inference_mode():
                        torch.nn.functional.linear(x, w, bias) + 2.0 * ((x @ a.t()) @ b.t())
                t_f32 = median_ms(f32, runs)
                for name, t in (("bnb-train (Linear4bit + PEFT LoRA, train mode)", t_train),
                                ("bnb-infer (eval, inference_mode)", t_infer),
                                ("torch f32 linear on dequantized W + LoRA", t_f32)):
                    lines.append("| %s | %d×%d | %d | %d | %.3f |" % (name, k, n, m, threads, t))
                    print(lines[-1], flush=True)
    with open(args.output, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", args.output)


def m1(threads, runs):
    """bnb-infer at M = 1 (median of `runs` after >= 0.1 s of warm-up, as qlora-bench), as JSON."""
    import json
    torch.set_num_threads(threads)
    model, _, _, _, _ = build(4096, 11008)
    model.eval()
    x = torch.randn(1, 4096)

    def infer():
        with torch.inference_mode():
            model(x)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.1:
        infer()
    print(json.dumps({"bnb_infer_ms": median_ms(infer, runs), "threads": threads,
                      "bitsandbytes": bnb.__version__, "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
