import Foundation
import XCTest
@testable import QLoRA

/// Finite-difference checks of a recorded op's vjp: the loss is mse(f(inputs), target) with a
/// fixed random target, the analytic gradients come from `Graph.backward(inputGradients:)`, and
/// every element of each input is checked against a central difference of the compiled forward.
enum GradientCheck {
    /// `build` records f over the graph's inputs (same order as `inputs`) and returns its value.
    static func check(inputs: [(name: String, tensor: Tensor)], ids: [String: IntTensor] = [:], idShapes: [String: [Int]] = [:],
                      h: Float = 1e-2, tolerance: Float = 2e-3, _ what: String,
                      build: (Graph, [Value], [String: Value]) throws -> Value,
                      file: StaticString = #filePath, line: UInt = #line) throws {
        func graph(withGradients: Bool) throws -> (ExecutablePlan, Tensor) {
            let g = Graph()
            let xs = inputs.map { g.input($0.name, shape: $0.tensor.shape) }
            var idValues: [String: Value] = [:]
            for (name, shape) in idShapes { idValues[name] = g.input(name, shape: shape, element: .int32) }
            let y = try build(g, xs, idValues)
            var rng = SeededRandom(seed: 77)
            let target = try Tensor(shape: y.shape, scalars: rng.floats(y.shape.reduce(1, *)))
            let loss = try g.mseLoss(y, target: g.input("target", shape: y.shape))
            g.output("loss", loss)
            if withGradients {
                try g.backward(from: loss, inputGradients: Dictionary(uniqueKeysWithValues: zip(inputs.map { "d_\($0.name)" }, xs)))
            }
            return (try g.compile(CompileOptions(threads: 1)), target)
        }
        let (plan, target) = try graph(withGradients: true)
        var feeds = Dictionary(uniqueKeysWithValues: inputs.map { ($0.name, $0.tensor) })
        feeds["target"] = target
        let analytic = try plan.run(feeds, ids: ids)
        let (forward, _) = try graph(withGradients: false)
        for (name, tensor) in inputs {
            let grad = analytic["d_\(name)"]!.scalars
            var numeric = [Float](repeating: 0, count: tensor.scalars.count)
            for i in 0..<tensor.scalars.count {
                var plus = tensor.scalars, minus = tensor.scalars
                plus[i] += h
                minus[i] -= h
                var f = feeds
                f[name] = try Tensor(shape: tensor.shape, scalars: plus)
                let lp = try forward.run(f, ids: ids)["loss"]!.scalars[0]
                f[name] = try Tensor(shape: tensor.shape, scalars: minus)
                let lm = try forward.run(f, ids: ids)["loss"]!.scalars[0]
                numeric[i] = Float((Double(lp) - Double(lm)) / (2 * Double(h)))
            }
            assertClose(grad, numeric, relative: tolerance, "\(what): d\(name) vs finite differences", file: file, line: line)
            XCTAssertGreaterThan(grad.map(abs).max() ?? 0, 0, "\(what): d\(name) is all zero", file: file, line: line)
        }
    }
}
