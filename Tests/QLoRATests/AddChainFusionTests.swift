import XCTest
@testable import QLoRA

/// Chains of adds as one `add_chain` step: ((a + b) + c) + d gives the bits of the three add
/// steps (1 and 2 threads, above and below the one-thread cutoff, in place or not); only the
/// left operand is absorbed, an inner sum read elsewhere and a row broadcast stay adds.
final class AddChainFusionTests: XCTestCase {
    func options(threads: Int, chains: Bool) -> CompileOptions {
        var o = CompileOptions(threads: threads)
        if !chains { o.fusionStages.remove(.addChains) }
        return o
    }

    func steps(_ g: Graph, _ o: CompileOptions) throws -> [String] {
        try Compiler.optimize(g.snapshot, options: o).nodes.filter { !$0.op.isLeaf && !$0.op.definition.isAlias }
            .map { n in n.op.as(AddChainOp.self).map { "add_chain(\($0.count))" } ?? n.op.name }
    }

    func testLeftDeepChainsBecomeOneStepWithTheSameBits() throws {
        for n in [1000, 50_000] {
            var rng = SeededRandom(seed: UInt64(n))
            let names = ["a", "b", "c", "d", "e"]
            // Magnitudes far apart, so a different order would round differently.
            let scales: [Float] = [1, 1e-4, 3e3, 0.7, 1e7]
            var feeds: [String: Tensor] = [:]
            for (i, k) in names.enumerated() { feeds[k] = try Tensor(shape: [n], scalars: rng.floats(n, scale: scales[i])) }
            let g = Graph()
            let v = names.map { g.input($0, shape: [n]) }
            g.output("chain", try g.add(try g.add(try g.add(try g.add(v[0], v[1]), v[2]), v[3]), v[4]))
            let inner = try g.add(v[2], v[3])
            g.output("right", try g.add(v[0], try g.add(v[1], inner)))   // a + (b + (c + d)): stays three adds
            g.output("inner", inner)
            let row = g.input("row", shape: [n / 10])
            let grid = try g.reshape(v[4], to: [10, n / 10])
            g.output("bias", try g.add(try g.add(grid, try g.reshape(v[3], to: [10, n / 10])), row))   // a row broadcast stays
            XCTAssertEqual(try steps(g, options(threads: 1, chains: true)), ["add_chain(5)", "add", "add", "add", "add", "add"])
            XCTAssertEqual(try steps(g, options(threads: 1, chains: false)).filter { $0 == "add" }.count, 9)
            var all = feeds
            all["row"] = try Tensor(shape: [n / 10], scalars: rng.floats(n / 10))
            for threads in [1, 2] {
                let got = try g.compile(options(threads: threads, chains: true)).run(all)
                let ref = try g.compile(options(threads: threads, chains: false)).run(all)
                for k in ["chain", "right", "inner", "bias"] { XCTAssertEqual(got[k]!.scalars, ref[k]!.scalars, "\(k), n = \(n), \(threads) threads") }
                // Against the same additions in Swift.
                let terms = names.map { feeds[$0]!.scalars }
                var expect = terms[0]
                for t in terms.dropFirst() { for i in 0..<n { expect[i] = expect[i] + t[i] } }
                XCTAssertEqual(got["chain"]!.scalars, expect)
            }
        }
    }
}
