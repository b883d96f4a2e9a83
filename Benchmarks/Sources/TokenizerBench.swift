// qlora-bench --tokenizer [--tokenizer-json path (a tokenizer.json, a model folder or a GGUF)] [--mb 4] [--corpus-out text.txt] [--ids-out ids.u32]
// Single-thread encode throughput of BPETokenizer on a few MB of varied, seeded text (English-like
// prose with rare made-up words, numbers, code, accented Latin, Cyrillic, CJK, Arabic, emoji,
// whitespace runs), plus decode throughput. --corpus-out / --ids-out write the text and the ids
// (little-endian u32) for Benchmarks/peer/tokenizer_peer.py, which times Hugging Face tokenizers
// on the same text and checks it gives the same ids.
import Foundation
import QLoRA

enum TokenizerBench {
    static let words = ("the of and to in is that for it as with was on be by this are from at or an have not which "
        + "but all were when we there can more if will one about their has would what so up out them into time "
        + "model training data learning weights gradient quantization memory tensor layer adapter token language "
        + "however because between through during without although important different example following").split(separator: " ").map(String.init)
    static let foreign = ["café", "naïve", "Größe", "señor", "über", "français", "привет", "мир", "данные", "東京", "日本語",
                          "机器学习", "数据", "안녕하세요", "مرحبا", "بالعالم", "नमस्ते", "γειά", "σου", "Ωμέγα"]
    static let emoji = ["😀", "🎉", "👍🏽", "❤️", "🚀", "👨‍👩‍👧", "🇫🇷", "✨"]
    static let code = ["func encode(_ text: String) -> [Int] {", "    let x = y[i] + 42;", "return self.cache[key] ?? nil",
                       "for (k, v) in zip(a, b) { total += k * v }", "#include <stdio.h>", "if err != nil { return err }",
                       "def forward(self, x):\n        return F.relu(self.fc(x))", "}\n"]

    /// Deterministic text of about `bytes` bytes.
    static func corpus(bytes: Int, seed: UInt64 = 42) -> String {
        var rng = SplitMix64(seed: seed)
        func pick<T>(_ a: [T]) -> T { a[Int(rng.next() % UInt64(a.count))] }
        var out = ""
        out.reserveCapacity(bytes + 256)
        var sentence = 0
        while out.utf8.count < bytes {
            let r = rng.next() % 100
            if r < 4 {
                out += "\n" + pick(code) + "\n"
                continue
            }
            let n = 6 + Int(rng.next() % 14)
            for k in 0..<n {
                let w: String
                switch rng.next() % 100 {
                case 0..<72: w = pick(words)
                case 72..<80:  // rare made-up words: the cache misses
                    let letters = Array("abcdefghijklmnopqrstuvwxyz")
                    w = String((0..<(3 + Int(rng.next() % 8))).map { _ in pick(letters) })
                case 80..<87: w = String(rng.next() % 100_000)
                case 87..<95: w = pick(foreign)
                case 95..<97: w = pick(emoji)
                default: w = pick(["(", ")", "\"", "--", "...", "$", "%", "'s", "n't", "&"])
                }
                out += (k == 0 ? w.capitalized : (rng.next() % 30 == 0 ? "  " : " ") + w)
            }
            out += pick([".", ".", ".", "!", "?", ",", ";", ":"])
            sentence += 1
            out += sentence % 5 == 0 ? (rng.next() % 3 == 0 ? "\n\n" : "\n") : " "
            if rng.next() % 50 == 0 { out += "\t    " }
        }
        return out
    }

    static func run(args: [String], option: (String) -> String?) throws {
        let path = option("--tokenizer-json") ?? "../shared/reference/smollm2/tokenizer/tokenizer.json"
        let mb = Double(option("--mb") ?? "4") ?? 4
        var t0 = Date()
        let tokenizer = try BPETokenizer.load(path: path)
        print("tokenizer: \(path), \(tokenizer.vocabularySize) ids, loaded in \(String(format: "%.0f", Date().timeIntervalSince(t0) * 1000)) ms")
        let text = corpus(bytes: Int(mb * 1_000_000))
        let size = Double(text.utf8.count)
        if let p = option("--corpus-out") { try text.write(toFile: p, atomically: true, encoding: .utf8) }
        var ids: [Int] = []
        var times: [Double] = []
        for _ in 0..<5 {
            t0 = Date()
            ids = tokenizer.encode(text)
            times.append(Date().timeIntervalSince(t0))
        }
        let encode = times.sorted()[2]
        // Per-line encode: many short calls (each with a fresh word cache), like a dataset of examples.
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        t0 = Date()
        var lineTokens = 0
        for l in lines { lineTokens += tokenizer.encode(l).count }
        let perLine = Date().timeIntervalSince(t0)
        times.removeAll()
        var decoded = ""
        for _ in 0..<3 {
            t0 = Date()
            decoded = try tokenizer.decode(ids)
            times.append(Date().timeIntervalSince(t0))
        }
        let decode = times.sorted()[1]
        print(String(format: "text: %.2f MB, %d tokens (%.2f bytes/token), round trip %@", size / 1e6, ids.count,
                     size / Double(ids.count), decoded == text ? "exact" : "DIFFERS"))
        print(String(format: "encode (one call):      %7.2f MB/s  %9.0f tokens/s  (median of 5, %.3f s)", size / encode / 1e6,
                     Double(ids.count) / encode, encode))
        print(String(format: "encode (%d lines):   %7.2f MB/s  %9.0f tokens/s", lines.count, size / perLine / 1e6, Double(lineTokens) / perLine))
        print(String(format: "decode:                 %7.2f MB/s  %9.0f tokens/s", size / decode / 1e6, Double(ids.count) / decode))
        if let p = option("--ids-out") {
            var le = ids.map { UInt32($0).littleEndian }
            try Data(bytes: &le, count: le.count * 4).write(to: URL(fileURLWithPath: p))
        }
    }
}
