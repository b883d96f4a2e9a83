import Foundation
import XCTest
@testable import QLoRA

/// What `qlora inspect` shows about steps and buffers agrees with the plan: lifetimes are the
/// 0-based indices of the defining and the last using step, and a cached step does not claim to
/// dequantize.
final class InspectReportTests: XCTestCase {
    func plan(_ graph: String, mode: ExecutionMode) throws -> ExecutablePlan {
        let def = try GraphDefinition.load(url: Reference.projectRoot.appendingPathComponent("Graphs/\(graph).json"), dims: ["tokens": 3])
        let loaded = try def.load(weights: CheckpointWeights(url: Reference.url("interop/model_bnb4bit/model.safetensors")))
        return try loaded.graph.compile(CompileOptions(mode: mode, threads: 2))
    }

    func testBufferLifetimesAreStepIndices() throws {
        for mode in [ExecutionMode.onTheFly, .cached] {
            let p = try plan("llama-mlp", mode: mode)
            let report = PlanReport(p)
            XCTAssertEqual(report.buffers.count, mode == .onTheFly ? 1 : 2)
            for b in report.buffers {
                let defining = try XCTUnwrap(p.steps.firstIndex { $0.node == b.node }, b.label)
                // The buffer's values: the one defined there and those computed in place over it.
                var values: Set<Int> = [b.node]
                for s in p.steps where s.output == p.memory.refs[b.node] && p.ir.nodes[s.node].operands.contains(where: values.contains) {
                    values.insert(s.node)
                }
                let users = p.steps.indices.filter { p.ir.nodes[p.steps[$0].node].operands.contains(where: values.contains) }
                XCTAssertEqual(b.firstStep, defining, "\(b.label) defined")
                XCTAssertEqual(b.lastStep, users.max(), "\(b.label) last used")
            }
            let table = report.bufferTable
            if mode == .onTheFly {
                // gate/up + silu·mul are one group step (0), read by down_proj (step 1).
                XCTAssertEqual(report.buffers.map { [$0.firstStep, $0.lastStep] }, [[0, 1]])
                XCTAssert(table.contains("lifetime (steps 0…1)"), table)
                XCTAssert(table.contains("██ 0–1"), table)
            } else {
                // Cached weights are not grouped: gate_proj (step 0) holds silu_mul's result too (step 2
                // runs in place), read by down_proj (step 3).
                XCTAssertEqual(report.buffers.map { [$0.firstStep, $0.lastStep] }, [[0, 3], [1, 2]])
                XCTAssert(table.contains("lifetime (steps 0…3)"), table)
                XCTAssert(table.contains("████ 0–3"), table)
            }
        }
    }

    func testCachedStepsDoNotClaimToDequantize() throws {
        let onTheFly = PlanReport(try plan("llama-mlp", mode: .onTheFly)), cached = PlanReport(try plan("llama-mlp", mode: .cached))
        let linear = { (r: PlanReport) in r.steps.filter { $0.kernel.contains("qlora_linear") } }
        XCTAssertEqual(linear(onTheFly).count, 2) // the gate/up group and down_proj
        XCTAssertEqual(linear(cached).count, 3)
        for s in linear(onTheFly) { XCTAssertEqual(s.fusedOps.first, "dequantize", s.label) }
        for s in linear(cached) {
            XCTAssertFalse(s.fusedOps.contains("dequantize"), "\(s.label): \(s.fusedOps)")
            XCTAssertEqual(s.fusedOps.first, "matmul", s.label)
        }
    }
}
