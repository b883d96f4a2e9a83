// The README's "Use it in your package" example, run by a package that depends on a tagged
// release of QLoRA, and checked against the bitsandbytes + PEFT reference case lora_96x160.
import Foundation
import QLoRA

let reference = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "../shared/reference"

/// A little-endian float32 file from the reference folder.
func load(_ file: String, _ shape: [Int]) throws -> Tensor {
    let data = try Data(contentsOf: URL(fileURLWithPath: reference + "/" + file))
    let scalars = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    return try Tensor(shape: shape, scalars: scalars)
}

// --- the README example ---
var config = QLoraConfig()               // NF4, block 64, double quant, r = 8, alpha = 16
config.rank = 8
config.alpha = 16
let layer = try QuantizedLinear(weight: load("w96x160_W.f32", [96, 160]),
                                bias: load("lora_96x160_bias.f32", [96]), config: config)
try layer.setLoraWeights(a: load("lora_96x160_A.f32", [8, 160]), b: load("lora_96x160_B.f32", [96, 8]))
let x = try load("lora_96x160_x2d_x.f32", [4, 160])
let graph = Graph()                      // record once, compile to a plan, run it many times
graph.output("y", try layer(graph.input("x", shape: x.shape)))
let plan = try graph.compile(CompileOptions(threads: 2))
let y = try plan.run(["x": x])["y"]!
// --- end of the example ---

let expected = try load("lora_96x160_x2d_y.f32", [4, 96])
let eager = try layer.forward(x)
// max |diff| / max |y|, as the library's own reference tests measure it.
let scale = expected.scalars.map(abs).max()!
let worst = zip(y.scalars + eager.scalars, expected.scalars + expected.scalars).map { abs($0 - $1) }.max()! / scale
guard y.shape == [4, 96], eager.shape == [4, 96], worst <= 1e-5 else {
    print("consumer: FAILED: shape \(y.shape), max |diff| / max |y| = \(worst) against PEFT's output")
    exit(1)
}
print("consumer: QLoRA resolved by version; forward pass matches PEFT (max |diff| / max |y| = \(worst))")
