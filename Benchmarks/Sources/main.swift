// qlora-bench: kernel benchmarks with the machine's ceilings measured in the same run.
//   qlora-bench [--quick] [--graph-only] [--threads 1,2] [--output path.md]
import Foundation
import QLoRA

let args = Array(CommandLine.arguments.dropFirst())
func option(_ name: String) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}
let quick = args.contains("--quick")
/// Only the graph-level cases (compile time, modes and .auto, resident memory).
let graphOnly = args.contains("--graph-only")
let output = option("--output")
let threads = (option("--threads") ?? "1,\(min(2, Runtime.defaultThreads))")
    .split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
let threadCounts = Array(Set(threads)).sorted()
if args.contains("--help") || threadCounts.isEmpty {
    print("usage: qlora-bench [--quick] [--graph-only] [--threads 1,2] [--output results.md]\n"
          + "       qlora-bench --train-step [--threads 2] [--runs 5] [--gradient-checkpointing]   (forward+backward+AdamW, 4096x11008 NF4, r=16, M=128)\n"
          + "       qlora-bench --llama MODEL.gguf|DIR [--threads 2] [--runs 5] [--json out.json] [--train-only] [--gradient-checkpointing] [--profile] [--compute-type f32|bf16]   (prefill-128, decode, train step seq 256 with peak RSS; --profile: time per plan step)\n"
          + "       qlora-bench --attention [--threads 2] [--runs 5]   (the attention kernel at SmolLM2's shape: prefill, backward, decode, packed)\n"
          + "       mpirun -np N qlora-bench --allreduce [--floats 4884480,39976960] [--runs 5]   (gradient all-reduce time)\n"
          + "       qlora-bench --scale MODEL_DIR --phase inference|train [--threads 2] [--rounds 5] [--json out.json] [--profile] [--compute-type f32|bf16]   (7B scale: decode vs bandwidth bound in interleaved rounds, prefill-512, train step + peak RSS; --profile: time per plan step of a decode)\n"
          + "       qlora-bench --m1 [--threads 2] [--rounds 9] [--json out.json]   (4096x11008 NF4+DQ M=1 kernel vs streaming reads of its bytes, interleaved rounds)\n"
          + "       qlora-bench --tokenizer [--tokenizer-json path] [--mb 4] [--corpus-out text.txt] [--ids-out ids.u32]")
    exit(threadCounts.isEmpty ? 1 : 0)
}

if args.contains("--allreduce") {
    do {
        let sizes = option("--floats").map { $0.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 } } ?? AllReduceBench.defaultSizes
        try AllReduceBench.run(sizes: sizes, runs: Int(option("--runs") ?? "") ?? 5)
        exit(0)
    } catch {
        print("error: \(error)")
        exit(1)
    }
}

if args.contains("--tokenizer") {
    do {
        try TokenizerBench.run(args: args, option: option)
        exit(0)
    } catch {
        print("error: \(error)")
        exit(1)
    }
}

if let llama = option("--llama") {
    do {
        try LlamaBench.run(model: llama, threads: threadCounts.max()!, runs: Int(option("--runs") ?? "") ?? 5, json: option("--json"),
                           trainOnly: args.contains("--train-only"), checkpointing: args.contains("--gradient-checkpointing"),
                           profile: args.contains("--profile"), computeType: try LlamaTrainStepCase.computeType(option("--compute-type")))
        exit(0)
    } catch {
        print("error: \(error)")
        exit(1)
    }
}

if args.contains("--attention") {
    AttentionBench.run(threads: threadCounts.max()!, runs: Int(option("--runs") ?? "") ?? 5)
    exit(0)
}

if args.contains("--m1") {
    do {
        try DecodeKernelBench.run(threads: threadCounts.max()!, rounds: max(1, Int(option("--rounds") ?? "") ?? 9), json: option("--json"))
        exit(0)
    } catch {
        print("error: \(error)")
        exit(1)
    }
}

if let scale = option("--scale") {
    do {
        try ScaleBench.run(model: scale, phase: option("--phase") ?? "inference", threads: threadCounts.max()!,
                           rounds: max(1, Int(option("--rounds") ?? "") ?? 5), json: option("--json"), profile: args.contains("--profile"),
                           computeType: try LlamaTrainStepCase.computeType(option("--compute-type")))
        exit(0)
    } catch {
        print("error: \(error)")
        exit(1)
    }
}

if args.contains("--train-step") {
    do {
        try TrainStepBench.run(threads: threadCounts.max()!, runs: Int(option("--runs") ?? "") ?? 5,
                               checkpointing: args.contains("--gradient-checkpointing"))
        exit(0)
    } catch {
        print("error: \(error)")
        exit(1)
    }
}

if let probe = option("--memory-probe") {
    do {
        try memoryProbe(mode: ExecutionMode(rawValue: probe) ?? .onTheFly, threads: threadCounts.max()!)
        exit(0)
    } catch {
        print("error: \(error)")
        exit(1)
    }
}

let bench = Bench(quick: quick, threadCounts: threadCounts)
let machine = Machine.describe(threads: threadCounts)
machine.forEach { print($0) }
let started = Date()

let shapes = quick ? [LinearShape(K: 4096, N: 11008)] : [LinearShape(K: 4096, N: 4096), LinearShape(K: 4096, N: 11008)]
let rowCounts = quick ? [1, 16, 128] : [1, 4, 16, 64, 128, 512]
let variants = quick ? [QuantVariant(type: .nf4, doubleQuant: true)]
    : [QuantVariant(type: .nf4, doubleQuant: true), QuantVariant(type: .nf4, doubleQuant: false),
       QuantVariant(type: .fp4, doubleQuant: true), QuantVariant(type: .fp4, doubleQuant: false)]

do {
    try streamCeilings(weightBytes: shapes.map { ($0.label, $0.quantizedBytes) })(bench)
    for shape in shapes where !graphOnly {
        let weights = try LinearWeights(shape, variants: variants)
        var cases: [BenchCase] = [linearCase(weights, rowCounts: rowCounts)]
        if !quick || shape.N == 11008 { cases.insert(dequantizeCase(weights), at: 0) }
        for c in cases { try c(bench) }
    }
    try compileCase()(bench)
    try modesCase(rowCounts: rowCounts, threads: threadCounts.max()!)(bench)
    try memoryCase(threads: threadCounts.max()!)(bench)
} catch {
    FileHandle.standardError.write("qlora-bench: \(error)\n".data(using: .utf8)!)
    exit(1)
}

let command = "qlora-bench " + CommandLine.arguments.dropFirst().joined(separator: " ")
let report = Report.markdown(bench, machine: machine, command: command, seconds: Date().timeIntervalSince(started))
if let output {
    do {
        try FileManager.default.createDirectory(at: URL(fileURLWithPath: output).deletingLastPathComponent(),
                                                withIntermediateDirectories: true)
        try report.write(toFile: output, atomically: true, encoding: .utf8)
        print("wrote \(output)")
    } catch {
        FileHandle.standardError.write("qlora-bench: cannot write \(output): \(error)\n".data(using: .utf8)!)
        exit(1)
    }
} else {
    print(report)
}
