import Foundation

/// A safetensors checkpoint in the bitsandbytes 4-bit layout (as transformers' save_pretrained
/// writes it). A 4-bit parameter `P` (e.g. `model.layers.0.mlp.up_proj.weight`) is stored as
///
///     P                                   U8  [ceil(n/2), 1]  packed codes, element 2i in the high nibble
///     P.absmax                            F32 [blocks] (plain) or U8 [blocks] (double quant)
///     P.quant_map                         F32 [16]     the codebook
///     P.nested_absmax                     F32 [ceil(blocks/nb)]   (double quant only)
///     P.nested_quant_map                  F32 [256]               (double quant only)
///     P.quant_state.bitsandbytes__<type>  U8  [len]    JSON, see `BnbQuantState`
///
/// Every other tensor is "plain". Opening validates the layout of every 4-bit parameter from the
/// header alone; `quantized(_:)` reads and checks the data.
public struct BnbCheckpoint: Sendable {
    public let file: SafeTensorsFile
    /// The 4-bit parameters, sorted.
    public let quantizedNames: [String]
    /// Tensors that are not part of a 4-bit parameter, sorted.
    public let plainNames: [String]
    private let states: [String: BnbQuantState]

    /// The auxiliary tensor suffixes of a 4-bit parameter (besides the quant state).
    static let auxSuffixes = ["absmax", "quant_map", "nested_absmax", "nested_quant_map"]

    public init(url: URL) throws { try self.init(file: SafeTensorsFile(url: url)) }

    public init(file: SafeTensorsFile) throws {
        self.file = file
        var states: [String: BnbQuantState] = [:]
        var owned = Set<String>()
        for name in file.names {
            for type in QuantType.allCases where name.hasSuffix("." + BnbQuantState.keySuffix(type)) {
                let param = String(name.dropLast(BnbQuantState.keySuffix(type).count + 1))
                guard states[param] == nil else {
                    throw QLoraError.malformedFile(file: file.path, field: param, reason: "has quant states for both nf4 and fp4")
                }
                let info = try file.info(name)
                guard info.dtype == .u8 else {
                    throw QLoraError.malformedFile(file: file.path, field: "\(name).dtype", reason: "quant state must be U8, got \(info.dtype.rawValue)")
                }
                let state = try BnbQuantState.parse(file.bytes(name), expectedType: type, file: file.path, field: name)
                try BnbCheckpoint.checkLayout(param, state, file)
                states[param] = state
                owned.insert(name)
                owned.insert(param)
                for s in BnbCheckpoint.auxSuffixes where file.contains("\(param).\(s)") { owned.insert("\(param).\(s)") }
            }
        }
        self.states = states
        quantizedNames = states.keys.sorted()
        plainNames = file.names.filter { !owned.contains($0) }
    }

    /// The parsed quant state of a 4-bit parameter.
    public func quantState(_ name: String) throws -> BnbQuantState {
        guard let s = states[name] else {
            throw QLoraError.invalidArgument("'\(name)' is not a 4-bit parameter of \(file.path)")
        }
        return s
    }

    public func isQuantized(_ name: String) -> Bool { states[name] != nil }

    /// Checks presence, dtype and element count of every tensor of parameter `p`.
    private static func checkLayout(_ p: String, _ state: BnbQuantState, _ file: SafeTensorsFile) throws {
        let n = state.shape.reduce(1, *)
        let blocks = (n + state.blockSize - 1) / state.blockSize
        func expect(_ name: String, _ dtype: SafeTensorsDType, _ count: Int) throws {
            guard file.contains(name) else {
                throw QLoraError.malformedFile(file: file.path, field: name, reason: "missing (needed by the 4-bit parameter '\(p)')")
            }
            let info = try file.info(name)
            guard info.dtype == dtype else {
                throw QLoraError.malformedFile(file: file.path, field: "\(name).dtype", reason: "expected \(dtype.rawValue), got \(info.dtype.rawValue)")
            }
            guard info.elementCount == count else {
                throw QLoraError.malformedFile(file: file.path, field: "\(name).shape",
                                               reason: "\(info.shape) holds \(info.elementCount) elements, expected \(count) for quant-state shape \(state.shape) and block size \(state.blockSize)")
            }
        }
        try expect(p, .u8, (n + 1) / 2)
        try expect("\(p).quant_map", .f32, 16)
        if let nested = state.nested {
            try expect("\(p).absmax", .u8, blocks)
            try expect("\(p).nested_absmax", .f32, (blocks + nested.blockSize - 1) / nested.blockSize)
            try expect("\(p).nested_quant_map", .f32, 256)
        } else {
            try expect("\(p).absmax", .f32, blocks)
            for s in ["nested_absmax", "nested_quant_map"] where file.contains("\(p).\(s)") {
                throw QLoraError.malformedFile(file: file.path, field: "\(p).\(s)", reason: "present but the quant state has no nested_* fields")
            }
        }
    }

    /// Reads a 4-bit parameter, checking the quant map against the codebook and the statistics
    /// for non-finite values.
    public func quantized(_ name: String) throws -> QuantizedTensor {
        let state = try quantState(name)
        func bad(_ field: String, _ reason: String) -> QLoraError { .malformedFile(file: file.path, field: field, reason: reason) }
        func finite(_ field: String) throws -> [Float] {
            let v = try file.floats(field)
            if let i = v.firstIndex(where: { !$0.isFinite }) { throw bad(field, "non-finite value \(v[i]) at index \(i)") }
            return v
        }
        let map = try file.floats("\(name).quant_map")
        let code = QuantizedTensor.codebook(state.quantType)
        if let i = (0..<16).first(where: { map[$0].bitPattern != code[$0].bitPattern }) {
            throw bad("\(name).quant_map", "entry \(i) is \(map[i]) but the \(state.quantType.rawValue) codebook has \(code[i])")
        }
        let statistics: QuantStatistics
        if let nested = state.nested {
            let dq = DoubleQuantState(quantizedAbsmax: try file.bytes("\(name).absmax"),
                                      absmax2: try finite("\(name).nested_absmax"),
                                      code2: try finite("\(name).nested_quant_map"),
                                      offset: nested.offset, blockSize2: nested.blockSize)
            statistics = .double(dq)
        } else {
            statistics = .plain(absmax: try finite("\(name).absmax"))
        }
        return try QuantizedTensor(shape: state.shape, quantType: state.quantType, blockSize: state.blockSize,
                                   packed: file.bytes(name), statistics: statistics, name: name)
    }

    /// A plain floating-point tensor as Float32, or a 4-bit parameter dequantized.
    public func tensor(_ name: String, threads: Int = Runtime.defaultThreads) throws -> Tensor {
        if isQuantized(name) { return try quantized(name).dequantize(threads: threads) }
        return try file.tensor(name)
    }
}

extension SafeTensorsWriter {
    /// Adds 4-bit parameter `name` in the bitsandbytes layout (see `BnbCheckpoint`); `dtype` is the
    /// torch name of the original weight's dtype recorded in the quant state.
    public func addQuantized(_ name: String, _ weight: QuantizedTensor, dtype: String = "float32") throws {
        try add(name, u8: weight.packed, shape: [weight.packed.count, 1])
        try add("\(name).quant_map", floats: weight.codebook, shape: [16])
        switch weight.statistics {
        case let .plain(absmax):
            try add("\(name).absmax", floats: absmax, shape: [absmax.count])
        case let .double(s):
            try add("\(name).absmax", u8: s.quantizedAbsmax, shape: [s.quantizedAbsmax.count])
            try add("\(name).nested_absmax", floats: s.absmax2, shape: [s.absmax2.count])
            try add("\(name).nested_quant_map", floats: s.code2, shape: [s.code2.count])
        }
        let json = Array(BnbQuantState(weight, dtype: dtype).json.utf8)
        try add("\(name).\(BnbQuantState.keySuffix(weight.quantType))", u8: json, shape: [json.count])
    }
}
