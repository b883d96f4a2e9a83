"""Sampling reference: which tokens survive transformers' warpers and with what probability.

Run once (needs torch and transformers 5.24.0); writes sampling_cases.json beside this script.
For each case: logits, temperature, top_k, top_p -> the ids with a finite warped logit and
softmax(warped) over them, as transformers' generate() builds them (temperature, then top-k,
then top-p, as LogitsProcessorList orders them in _get_logits_processor).
"""
import json, os
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

g = torch.Generator().manual_seed(7)
cases = []
vectors = [torch.randn(20, generator=g) * 3 for _ in range(4)]
vectors.append(torch.tensor([1.0, 3.0, 3.0, 0.5, 3.0, -2.0, 1.0, 0.0]))  # ties
vectors.append(torch.tensor([10.0, 9.5, -1.0, -30.0, 2.0, 2.0]))
for v in vectors:
    for t, k, p in [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.0, 3, 1.0), (1.0, 0, 0.9), (0.8, 5, 0.8), (1.3, 2, 0.5), (1.0, 0, 0.3), (0.5, 4, 0.95)]:
        x = v.clone()[None, :]
        ids = torch.zeros(1, 1, dtype=torch.long)
        x = TemperatureLogitsWarper(t)(ids, x)
        if k > 0:
            x = TopKLogitsWarper(k)(ids, x)
        if p < 1.0:
            x = TopPLogitsWarper(p)(ids, x)
        probs = torch.softmax(x, dim=-1)[0]
        keep = [i for i in range(x.shape[1]) if torch.isfinite(x[0, i])]
        cases.append({"logits": [float(a) for a in v], "temperature": t, "top_k": k, "top_p": p,
                      "ids": keep, "probs": [float(probs[i]) for i in keep]})
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sampling_cases.json")
with open(out, "w") as f:
    json.dump({"generator": "make_fixtures.py", "transformers": __import__("transformers").__version__, "cases": cases}, f)
print(len(cases), "cases ->", out)
