/// Which IR `Graph.dump` shows.
public enum DumpStage: String, Sendable, CaseIterable {
    /// As the layers recorded it.
    case recorded
    /// After the compiler passes (fusion, mode lowering, dead code elimination).
    case optimized
}

/// How `Graph.dump` renders the IR.
public enum DumpFormat: String, Sendable, CaseIterable {
    /// One node per line (`GraphPrinter`).
    case text
    /// `IRDump` as JSON; parses back with `IRDump.decode`.
    case json
    /// A Graphviz digraph with fused nodes as clusters.
    case dot
}

extension Graph {
    /// The IR at `stage` as structured data; `options` drive the passes for `.optimized`.
    public func irDump(stage: DumpStage, options: CompileOptions = CompileOptions()) throws -> IRDump {
        IRDump(try ir(stage, options), stage: stage.rawValue)
    }

    /// The IR at `stage` rendered as `format`.
    public func dump(stage: DumpStage, format: DumpFormat, options: CompileOptions = CompileOptions(), title: String = "graph") throws -> String {
        let g = try ir(stage, options)
        switch format {
        case .text: return GraphPrinter.text(g)
        case .json: return IRDump(g, stage: stage.rawValue).json.pythonDumps(indent: 2) + "\n"
        case .dot: return GraphDOTPrinter.dot(g, title: "\(title) (\(stage.rawValue))")
        }
    }

    private func ir(_ stage: DumpStage, _ options: CompileOptions) throws -> IRGraph {
        switch stage {
        case .recorded: return snapshot
        case .optimized: return try Compiler.optimize(snapshot, options: options)
        }
    }
}
