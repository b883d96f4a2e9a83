import Foundation

/// Markdown: machine, the targets checked against this run's own ceilings, then one table per group.
enum Report {
    static func markdown(_ bench: Bench, machine: [String], command: String, seconds: Double) -> String {
        let f = { (v: Double?, d: Int) in v.map { String(format: "%.\(d)f", $0) } ?? "–" }
        var out = "# qlora-bench results\n\n"
        out += "`\(command)` — \(String(format: "%.0f", seconds)) s, median of \(bench.runs) runs after warm-up.\n\n"
        out += machine.map { "- \($0)" }.joined(separator: "\n") + "\n\n"
        out += "GFLOP/s counts the base matmul only (2·M·N·K). *weight GB/s*: bytes of the weight as stored "
        out += "(4-bit + statistics for fused, f32 for BLAS) per second. *vs BLAS* = t(OpenBLAS SGEMM, or SGEMV for M = 1, "
        out += "same shape and threads) / t(case). *vs stream* = t(streaming read of the same weight bytes at the DRAM "
        out += "bandwidth of a 256 MiB buffer, same threads) / t(case); 1.0 means at the read-bandwidth ceiling. *vs stream "
        out += "(same size)* uses the bandwidth of a buffer the size of the weight, which fits in the LLC here.\n\n"
        let targets = targetLines(bench)
        if !targets.isEmpty { out += "## Targets (4096×11008, NF4+DQ, 2 threads)\n\n" + targets.joined(separator: "\n") + "\n\n" }
        if !bench.notes.isEmpty { out += bench.notes.map { "- \($0)" }.joined(separator: "\n") + "\n\n" }
        var groups: [String] = []
        for r in bench.rows where !groups.contains(r.group) { groups.append(r.group) }
        for g in groups {
            out += "## \(g)\n\n| case | shape | M | threads | ms | GFLOP/s | weight GB/s | vs BLAS | vs stream | vs stream (same size) |\n"
            out += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
            let rows = bench.rows.filter { $0.group == g }.enumerated()
                .sorted { ($0.element.threads, $0.element.m, $0.offset) < ($1.element.threads, $1.element.m, $1.offset) }
            for (_, r) in rows {
                out += "| \(r.name) | \(r.shape) | \(r.m == 0 ? "" : String(r.m)) | \(r.threads) | \(f(r.ms, 3)) | "
                out += "\(f(r.gflops, 1)) | \(f(r.weightGBs, 2)) | \(f(r.vsBLAS, 2)) | \(f(r.vsStream, 2)) | \(f(r.vsStreamSameSize, 2)) |\n"
            }
            out += "\n"
        }
        return out
    }

    static func targetLines(_ bench: Bench) -> [String] {
        func fused(_ m: Int) -> Row? {
            bench.rows.first { $0.shape == "4096×11008" && $0.m == m && $0.threads == 2 && $0.name.contains("fused on-the-fly NF4+DQ") }
        }
        var lines: [String] = []
        if let r = fused(128), let v = r.vsBLAS {
            lines.append("- M = 128: fused reaches \(String(format: "%.2f", v)) × OpenBLAS SGEMM GFLOP/s (target ≥ 0.90): \(v >= 0.9 ? "met" : "NOT met")")
        }
        if let r = bench.rows.first(where: { $0.shape == "4096×11008" && $0.m == 128 && $0.threads == 2 && $0.name.contains("bf16") }),
           let v = r.vsBLAS {
            lines.append("- M = 128, bf16 compute (nice to have): \(String(format: "%.2f", v)) × OpenBLAS f32 SGEMM (target ≥ 3): \(v >= 3 ? "met" : "NOT met"); "
                + "worst error vs the f32 fused output \(String(format: "%.1e", bench.worstBF16Error)) of max|y| (target ≤ 5e-3)")
        }
        if let r = fused(1) {
            if let s = r.vsStream {
                lines.append("- M = 1: fused takes \(String(format: "%.2f", 1 / s)) × the streaming read of its weight bytes at DRAM bandwidth (target ≤ 1.5): \(1 / s <= 1.5 ? "met" : "NOT met")")
            }
            if let s = r.vsStreamSameSize {
                lines.append("- M = 1: fused takes \(String(format: "%.2f", 1 / s)) × the read of a same-size (LLC-resident) buffer")
            }
            if let v = r.vsBLAS {
                lines.append("- M = 1: fused is \(String(format: "%.2f", v)) × faster than OpenBLAS SGEMV on the f32 weight (target ≥ 5): \(v >= 5 ? "met" : "NOT met")")
            }
        }
        return lines
    }
}
