/// The JSON quant state bitsandbytes stores as a U8 tensor `<param>.quant_state.bitsandbytes__<type>`
/// (QuantState.as_dict(packed=True), serialized with python json.dumps).
public struct BnbQuantState: Sendable, Equatable {
    public var quantType: QuantType
    public var blockSize: Int
    /// torch dtype name of the original weight ("float32", "float16", "bfloat16").
    public var dtype: String
    /// Logical weight shape, [out, in] for a linear layer.
    public var shape: [Int]
    /// Double-quant parameters, nil without double quantization.
    public var nested: Nested?

    public struct Nested: Sendable, Equatable {
        public var blockSize: Int
        public var dtype: String
        /// The offset as float32: bitsandbytes reads the JSON double back with torch.tensor(float(x)).
        public var offset: Float
    }

    /// Tensor-name suffix of the state, e.g. "quant_state.bitsandbytes__nf4".
    public static func keySuffix(_ type: QuantType) -> String { "quant_state.bitsandbytes__" + type.rawValue }

    /// Float dtypes the original weight may have had.
    static let knownDTypes: Set<String> = ["float32", "float16", "bfloat16", "float64"]

    public init(quantType: QuantType, blockSize: Int, dtype: String, shape: [Int], nested: Nested?) {
        self.quantType = quantType
        self.blockSize = blockSize
        self.dtype = dtype
        self.shape = shape
        self.nested = nested
    }

    /// The state describing `weight`, whose original dtype was `dtype`.
    public init(_ weight: QuantizedTensor, dtype: String) {
        var nested: Nested?
        if case let .double(s) = weight.statistics { nested = Nested(blockSize: s.blockSize2, dtype: "float32", offset: s.offset) }
        self.init(quantType: weight.quantType, blockSize: weight.blockSize, dtype: dtype, shape: weight.shape, nested: nested)
    }

    /// Exactly the bytes bitsandbytes writes: keys in its order, ", " / ": " separators, the
    /// offset as python's repr of the float32 widened to double.
    public var json: String {
        var members: [(key: String, value: JSONValue)] = [
            ("quant_type", .string(quantType.rawValue)),
            ("blocksize", .int(blockSize)),
            ("dtype", .string(dtype)),
            ("shape", .array(shape.map { .int($0) })),
        ]
        if let nested {
            members += [("nested_blocksize", .int(nested.blockSize)),
                        ("nested_dtype", .string(nested.dtype)),
                        ("nested_offset", .number(Double(nested.offset), text: ""))]
        }
        return JSONValue.object(members).pythonDumps()
    }

    /// Parses and validates the state stored under `field` in `file`; `expectedType` comes from
    /// the key suffix and must agree with the JSON.
    public static func parse(_ bytes: [UInt8], expectedType: QuantType, file: String, field: String) throws -> BnbQuantState {
        func bad(_ key: String, _ reason: String) -> QLoraError {
            .malformedFile(file: file, field: key.isEmpty ? field : "\(field): \(key)", reason: reason)
        }
        let root = try JSONValue.parse(bytes, file: file, field: field)
        guard case .object = root else { throw bad("", "quant state must be a JSON object, got \(root.kind)") }
        let allowed = ["quant_type", "blocksize", "dtype", "shape", "nested_blocksize", "nested_dtype", "nested_offset"]
        for key in root.keys where !allowed.contains(key) { throw bad(key, "unknown quant state field") }

        func string(_ key: String) throws -> String {
            guard let v = root[key] else { throw bad(key, "missing") }
            guard case let .string(s) = v else { throw bad(key, "must be a string, got \(v.kind)") }
            return s
        }
        func int(_ key: String) throws -> Int {
            guard let v = root[key] else { throw bad(key, "missing") }
            guard case let .int(i) = v else { throw bad(key, "must be an integer, got \(v.kind)") }
            return i
        }
        let typeName = try string("quant_type")
        guard let type = QuantType(rawValue: typeName) else { throw bad("quant_type", "unknown 4-bit type \"\(typeName)\" (nf4 or fp4)") }
        guard type == expectedType else {
            throw bad("quant_type", "\"\(typeName)\" disagrees with the tensor name suffix bitsandbytes__\(expectedType.rawValue)")
        }
        let blockSize = try int("blocksize")
        do { try QLoraConfig.validateBlockSize(blockSize) } catch {
            throw bad("blocksize", "\(blockSize) is not a power of two from 32 to 4096")
        }
        let dtype = try string("dtype")
        guard knownDTypes.contains(dtype) else { throw bad("dtype", "unsupported original dtype \"\(dtype)\"") }
        guard let shapeValue = root["shape"] else { throw bad("shape", "missing") }
        guard case let .array(dims) = shapeValue, !dims.isEmpty else { throw bad("shape", "must be a non-empty array") }
        var shape: [Int] = []
        for d in dims {
            guard case let .int(i) = d, i > 0 else { throw bad("shape", "dimensions must be positive integers") }
            shape.append(i)
        }
        guard (try? Tensor.elementCount(shape)) != nil else { throw bad("shape", "\(shape) is too large") }

        let nestedKeys = ["nested_blocksize", "nested_dtype", "nested_offset"]
        let present = nestedKeys.filter { root[$0] != nil }
        var nested: Nested?
        if !present.isEmpty {
            for key in nestedKeys where root[key] == nil { throw bad(key, "missing (the other nested_* fields are present)") }
            let nb = try int("nested_blocksize")
            guard nb > 0 else { throw bad("nested_blocksize", "must be > 0, got \(nb)") }
            guard nb <= 1 << 20 else { throw bad("nested_blocksize", "\(nb) is larger than 1048576 (bitsandbytes uses 256)") }
            let nd = try string("nested_dtype")
            guard nd == "float32" else { throw bad("nested_dtype", "only float32 nested statistics are supported, got \"\(nd)\"") }
            guard let offset = root["nested_offset"]!.doubleValue else {
                throw bad("nested_offset", "must be a number, got \(root["nested_offset"]!.kind)")
            }
            let f = Float(offset)
            guard f.isFinite else { throw bad("nested_offset", "\(offset) is not a finite float32") }
            nested = Nested(blockSize: nb, dtype: nd, offset: f)
        }
        return BnbQuantState(quantType: type, blockSize: blockSize, dtype: dtype, shape: shape, nested: nested)
    }
}
