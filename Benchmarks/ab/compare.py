"""Median time per case and variant from qlora-bench --quick reports, as ratios to the first variant,
and each variant's median "vs BLAS" (its speed relative to OpenBLAS measured in the same run).
Usage: compare.py DIR NAME NAME ...   (DIR holds NAME-rK.md files)"""
import collections, glob, os, re, statistics, sys

folder, names = sys.argv[1], sys.argv[2:]
times = collections.defaultdict(lambda: collections.defaultdict(list))
vs_blas = collections.defaultdict(lambda: collections.defaultdict(list))
order = []
for name in names:
    for path in sorted(glob.glob(os.path.join(folder, f"{name}-r*.md"))):
        section = ""
        for line in open(path):
            if line.startswith("## "):
                section = line[3:].strip()
            if not line.startswith("| ") or line.startswith("| case"):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            try:
                ms = float(cells[4])
            except (IndexError, ValueError):
                continue
            key = (section.split(" ")[0], cells[0], cells[2], cells[3])
            if key not in order:
                order.append(key)
            times[key][name].append(ms)
            # "vs BLAS" (OpenBLAS time / this time, same shape and threads, same run): the ceiling
            # measured minutes apart in the same process cancels most of the machine's drift.
            if len(cells) > 7 and cells[7] not in ("", "–"):
                vs_blas[key][name].append(float(cells[7]))

base = names[0]
header = (f"| section | case | M | threads | {base} ms | " + " | ".join(f"{n} / {base} time" for n in names[1:]) +
          " | " + " | ".join(f"{n} vs BLAS" for n in names) + " |")
print(header)
print("|" + "---|" * (header.count("|") - 1))
for key in order:
    t = times[key]
    if not all(t.get(n) for n in names):
        continue
    ref = statistics.median(t[base])
    ratios = " | ".join(f"{statistics.median(t[n]) / ref:.2f}" for n in names[1:])
    blas = " | ".join(f"{statistics.median(vs_blas[key][n]):.2f}" if vs_blas[key].get(n) else "" for n in names)
    print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {ref:.3f} | {ratios} | {blas} |")
