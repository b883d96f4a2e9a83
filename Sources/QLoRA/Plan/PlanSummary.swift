import Foundation

extension ExecutablePlan {
    /// A readable account of the plan: mode, threads, each step with its kernel, output buffer,
    /// FLOPs and bytes, the fused groups, and the memory (arena vs persistent).
    public var summary: String {
        var lines: [String] = []
        let fusedSteps = steps.filter { !$0.fusedOps.isEmpty }
        lines.append("plan: \(steps.count) steps, \(fusedSteps.count) fused groups, mode \(options.mode.rawValue), "
                     + "\(options.threads) thread\(options.threads == 1 ? "" : "s"), fusion \(options.fusion ? "on" : "off"), "
                     + "compute \(options.computeType.rawValue), isa \(Runtime.isa)")
        for (i, s) in steps.enumerated() {
            // (Foundation's %-30@ does not pad on Linux, so columns are padded here.)
            var line = "  " + Self.pad(String(i), 3, left: true) + "  " + Self.pad(s.kernelName, 36) + " "
                + Self.pad(s.label.isEmpty ? "-" : s.label, 34) + " " + Self.describe(s.output)
            line += "  \(Self.human(Double(s.flops), unit: "FLOP")), \(Self.bytes(s.bytesMoved)) moved"
            if !s.fusedOps.isEmpty { line += "  [fuses \(s.fusedOps.joined(separator: " → "))]" }
            line += "  {\(s.workSplit)}"
            lines.append(line)
        }
        for d in decisions {
            lines.append(String(format: "  weight %@: %@ (M=%d; est. on-the-fly %.4g ms, cached %.4g ms)", d.weight as NSString,
                                d.mode.rawValue as NSString, d.rows, d.onTheFlySeconds * 1e3, d.cachedSeconds * 1e3))
        }
        lines.append("memory: arena \(Self.bytes(arenaBytes)) (buffers \(Self.bytes(arenaBytes - scratchBytes)) reused from "
                     + "\(Self.bytes(unsharedBufferBytes)) unshared, scratch \(Self.bytes(scratchBytes))), persistent \(Self.bytes(persistentBytes))")
        if let checkpointing { lines += checkpointing.lines(peak: plannedPeakBytes) }
        return lines.joined(separator: "\n")
    }

    static func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - s.count))
        return left ? fill + s : s + fill
    }

    static func describe(_ ref: BufferRef) -> String {
        switch ref {
        case let .arena(offset, bytes): return "arena@\(offset)+\(bytes)"
        case let .parameter(i): return "param#\(i)"
        case let .weight(i): return "weight#\(i)"
        case let .cached(i): return "cached#\(i)"
        case let .state(i): return "state#\(i)"
        case let .input(i): return "input#\(i)"
        case let .output(i): return "output#\(i)"
        }
    }

    static func bytes(_ n: Int) -> String {
        let v = Double(n)
        if v >= 1_073_741_824 { return String(format: "%.2f GiB", v / 1_073_741_824) }
        if v >= 1_048_576 { return String(format: "%.2f MiB", v / 1_048_576) }
        if v >= 1024 { return String(format: "%.1f KiB", v / 1024) }
        return "\(n) B"
    }

    static func human(_ v: Double, unit: String) -> String {
        if v >= 1e9 { return String(format: "%.2f G\(unit)", v / 1e9) }
        if v >= 1e6 { return String(format: "%.2f M\(unit)", v / 1e6) }
        if v >= 1e3 { return String(format: "%.1f k\(unit)", v / 1e3) }
        return String(format: "%.0f \(unit)", v)
    }
}
