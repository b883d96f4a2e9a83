import Foundation
import XCTest
@testable import QLoRA

/// The IR printers (JSON round trip, DOT structure) and the plan report (its numbers are the plan's).
final class PrinterTests: XCTestCase {
    func stack(tokens: Int = 3) throws -> LoadedGraph {
        let def = try GraphDefinition.load(url: Reference.projectRoot.appendingPathComponent("Graphs/llama-mlp-stack.json"),
                                           dims: ["hidden": 32, "intermediate": 48, "tokens": tokens, "layers": 2])
        return try def.load(weights: nil)
    }

    func testJSONDumpRoundTripsForBothStagesAndModes() throws {
        let g = try stack().graph
        for stage in DumpStage.allCases {
            for mode in [ExecutionMode.onTheFly, .cached] {
                let options = CompileOptions(mode: mode, threads: 1)
                let text = try g.dump(stage: stage, format: .json, options: options)
                let back = try IRDump.decode(JSONValue.parse(Array(text.utf8), file: "dump", field: "$"))
                let direct = try g.irDump(stage: stage, options: options)
                XCTAssertEqual(back, direct, "\(stage) \(mode)")
                XCTAssertEqual(back.nodes.count, direct.nodes.count)
            }
        }
        let optimized = try g.irDump(stage: .optimized)
        // Per layer: gate/up as one group step with the silu·mul epilogue, down_proj alone.
        XCTAssertEqual(optimized.nodes.filter { $0.op == "fused_qlora_linear" }.count, 2)
        XCTAssertEqual(optimized.nodes.filter { $0.op == "fused_qlora_linear_group_silu_mul" }.count, 2)
        // Each layer's rms_norm runs inside its gate/up group (NormIntoLinearGroup), epsilon kept;
        // the final norm (the output) stays a step.
        XCTAssertEqual(optimized.nodes.filter { $0.op == "rms_norm" }.count, 1)
        XCTAssertEqual(optimized.nodes.first { $0.op == "fused_qlora_linear_group_silu_mul" }?.attributes["rms_norm_eps"]?.doubleValue,
                       Double(Float(1e-6)))
        let recorded = try g.irDump(stage: .recorded)
        XCTAssertEqual(recorded.nodes.first { $0.op == "rms_norm" }?.attributes["eps"]?.doubleValue, Double(Float(1e-6)))
    }

    func testDecodeRejectsDamagedDump() throws {
        let text = try stack().graph.dump(stage: .recorded, format: .json)
        let damaged = text.replacingOccurrences(of: "\"element\": \"float32\"", with: "\"element\": \"int8\"")
        XCTAssertThrowsError(try IRDump.decode(JSONValue.parse(Array(damaged.utf8), file: "d", field: "$"))) { e in
            XCTAssert("\(e)".contains("$.nodes[0].element"), "\(e)")
        }
    }

    func testDOTHasOneClusterPerFusedNodeAndBalancedBraces() throws {
        let g = try stack().graph
        let dot = try g.dump(stage: .optimized, format: .dot, title: "stack")
        let fused = try g.irDump(stage: .optimized).nodes.filter { $0.op.hasPrefix("fused_qlora_linear") || $0.op == "silu_mul" }.count
        XCTAssertEqual(dot.components(separatedBy: "subgraph cluster_").count - 1, fused)
        XCTAssertEqual(dot.filter { $0 == "{" }.count, dot.filter { $0 == "}" }.count)
        XCTAssert(dot.hasPrefix("digraph \"stack (optimized)\" {"))
        XCTAssert(dot.contains("label=\"dequantize → matmul → matmul(x,A) → matmul(·,B) → scale → add\""))
        XCTAssert(dot.contains(" → silu → mul\""), "the gate/up group's cluster ends in its epilogue")
        let recorded = try g.dump(stage: .recorded, format: .dot)
        XCTAssertFalse(recorded.contains("cluster_"), "nothing is fused before the passes")
    }

    func testPlanReportAgreesWithThePlan() throws {
        let g = try stack(tokens: 5).graph
        for mode in [ExecutionMode.onTheFly, .cached] {
            let plan = try g.compile(CompileOptions(mode: mode, threads: 2))
            let r = PlanReport(plan)
            XCTAssertEqual(r.arenaBytes, plan.arenaBytes)
            XCTAssertEqual(r.scratchBytes, plan.scratchBytes)
            XCTAssertEqual(r.persistentBytes, plan.persistentBytes)
            XCTAssertEqual(r.quantizedWeightBytes + r.cachedWeightBytes + r.parameterBytes, plan.persistentBytes)
            XCTAssertEqual(r.unsharedBufferBytes, plan.unsharedBufferBytes)
            XCTAssertEqual(r.steps.map(\.flops), plan.steps.map(\.flops))
            XCTAssertEqual(r.steps.map(\.bytesMoved), plan.steps.map(\.bytesMoved))
            XCTAssertEqual(r.steps.map(\.kernel), plan.steps.map(\.kernelName))
            // Every buffer lies inside the arena below the scratch region, and buffers alive at
            // the same time never overlap.
            for b in r.buffers { XCTAssertLessThanOrEqual(b.offset + b.bytes, plan.arenaBytes - plan.scratchBytes) }
            for (i, a) in r.buffers.enumerated() {
                for b in r.buffers[(i + 1)...] where a.firstStep <= b.lastStep && b.firstStep <= a.lastStep {
                    XCTAssert(a.offset + a.bytes <= b.offset || b.offset + b.bytes <= a.offset, "\(a.label) overlaps \(b.label)")
                }
            }
            XCTAssertLessThan(plan.arenaBytes - plan.scratchBytes, plan.unsharedBufferBytes, "the planner reuses memory")
            XCTAssertEqual(r.json["memory"]?["arena_bytes"], .int(plan.arenaBytes))
            XCTAssertEqual(mode == .cached, r.cachedWeightBytes > 0)
        }
    }
}
