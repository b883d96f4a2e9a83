import Foundation
@testable import QLoRA

/// One `lora_cases` entry of shared/reference/manifest.json as a layer: the reference weight
/// quantized with the case's settings, its bias and its adapter.
struct LoraReferenceCase {
    let name: String
    let layer: QuantizedLinear
    /// The manifest entry (r, alpha, scaling, ...).
    let entry: [String: Any]
    /// The entry's "files": key → file, shape.
    let files: [String: [String: Any]]

    static func names() throws -> [String] {
        (try Reference.manifest()["lora_cases"] as! [String: Any]).keys.sorted()
    }

    init(_ name: String) throws {
        let manifest = try Reference.manifest()
        let c = (manifest["lora_cases"] as! [String: [String: Any]])[name]!
        let weights = manifest["weights"] as! [String: [String: Any]]
        let files = c["files"] as! [String: [String: Any]]
        let wFile = (weights[c["weight"] as! String]!["files"] as! [String: [String: Any]])["W"]!
        var config = QLoraConfig()
        config.rank = c["r"] as! Int
        config.alpha = Float(c["alpha"] as! Double)
        config.useRSLoRA = c["use_rslora"] as? Bool ?? false
        config.quantType = QuantType(rawValue: c["quant_type"] as! String)!
        config.blockSize = c["blocksize"] as! Int
        config.doubleQuant = c["double_quant"] as! Bool
        let load = { (key: String) in try Self.tensor(files, key) }
        let w = try Reference.tensor(wFile["file"] as! String, shape: wFile["shape"] as! [Int])
        let bias = (c["bias"] as! Bool) ? try load("bias") : nil
        let layer = try QuantizedLinear(weight: w, bias: bias, config: config, name: name, seed: 1)
        try layer.setLoraWeights(a: load("A"), b: load("B"))
        self.name = name
        self.layer = layer
        self.entry = c
        self.files = files
    }

    /// The case's tensor `key` (a key of its "files").
    func tensor(_ key: String) throws -> Tensor { try Self.tensor(files, key) }

    private static func tensor(_ files: [String: [String: Any]], _ key: String) throws -> Tensor {
        try Reference.tensor(files[key]!["file"] as! String, shape: files[key]!["shape"] as! [Int])
    }
}
