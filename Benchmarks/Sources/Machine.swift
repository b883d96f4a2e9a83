import Foundation
import CQLoRAKernels
import QLoRA

/// The machine the numbers were taken on: CPU model, cores, caches, SIMD level in use.
enum Machine {
    static func describe(threads: [Int]) -> [String] {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let lines = cpuinfo.split(separator: "\n")
        let model = lines.first { $0.hasPrefix("model name") }.map { $0.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces) } ?? "unknown"
        let flags = lines.first { $0.hasPrefix("flags") }.map { String($0) } ?? ""
        let simd = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16"].filter { flags.contains(" \($0)") }
        let cache = { (name: String) -> String in
            (try? String(contentsOfFile: "/sys/devices/system/cpu/cpu0/cache/\(name)/size", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
        }
        return [
            "CPU: \(model), \(ProcessInfo.processInfo.activeProcessorCount) cores visible",
            "Caches (cpu0): L1d \(cache("index0")), L2 \(cache("index2")), L3 \(cache("index3"))",
            "CPU SIMD flags: \(simd.joined(separator: " "))",
            "Kernel ISA in use: \(Runtime.isa) (QLORA_ISA caps it); avx512_bf16: \(cq_cpu_has_avx512_bf16() != 0 ? "yes" : "no")",
            "Threads measured: \(threads.map(String.init).joined(separator: ", "))",
        ]
    }
}
