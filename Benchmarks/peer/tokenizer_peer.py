# Times Hugging Face `tokenizers` (pip install tokenizers) on qlora-bench --tokenizer's corpus,
# single thread, and checks its ids equal BPETokenizer's. Not run by CI.
#   .build/release/qlora-bench --tokenizer --corpus-out /tmp/corpus.txt --ids-out /tmp/ids.u32
#   python3 Benchmarks/peer/tokenizer_peer.py /tmp/corpus.txt /tmp/ids.u32 [tokenizer.json | model.gguf]
# A .gguf is loaded by transformers (AutoTokenizer.from_pretrained(dir, gguf_file=...)) and its
# backend `tokenizers` object is timed (Llama-2-style "llama" vocabularies: qlora-bench --tokenizer
# --tokenizer-json model.gguf).
import os
os.environ["RAYON_NUM_THREADS"] = "1"          # before tokenizers starts its thread pool
os.environ["TOKENIZERS_PARALLELISM"] = "false"
import array, statistics, sys, time
import tokenizers
from tokenizers import Tokenizer

corpus, ids_path = sys.argv[1], sys.argv[2]
path = sys.argv[3] if len(sys.argv) > 3 else "../shared/reference/smollm2/tokenizer/tokenizer.json"
if path.endswith(".gguf"):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path)).backend_tokenizer
    tok.no_padding(); tok.no_truncation()
else:
    tok = Tokenizer.from_file(path)
text = open(corpus, encoding="utf-8").read()
size = len(text.encode("utf-8"))
times = []
for _ in range(5):
    t0 = time.perf_counter()
    enc = tok.encode(text, add_special_tokens=False)
    times.append(time.perf_counter() - t0)
ids = enc.ids
t = statistics.median(times)
lines = text.split("\n")
t0 = time.perf_counter()
n = sum(len(tok.encode(l, add_special_tokens=False).ids) for l in lines)
per_line = time.perf_counter() - t0
ours = array.array("I")
ours.frombytes(open(ids_path, "rb").read())
same = list(ours) == ids
print(f"tokenizers {tokenizers.__version__}: {size/1e6:.2f} MB, {len(ids)} tokens, ids {'identical' if same else 'DIFFER'} to BPETokenizer's")
print(f"encode (one call):   {size/t/1e6:7.2f} MB/s  {len(ids)/t:9.0f} tokens/s  (median of 5, {t:.3f} s)")
print(f"encode ({len(lines)} lines): {size/per_line/1e6:7.2f} MB/s  {n/per_line:9.0f} tokens/s")
t0 = time.perf_counter()
dec = tok.decode(ids, skip_special_tokens=False)
t = time.perf_counter() - t0
print(f"decode:              {size/t/1e6:7.2f} MB/s  (round trip {'exact' if dec == text else 'differs'})")
