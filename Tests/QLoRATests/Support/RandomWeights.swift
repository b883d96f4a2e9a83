@testable import QLoRA

/// A 4-bit weight with random codes (random bytes exercise every nibble, including fp4's two zero
/// codes) and random block scales `|u| + absmaxFloor`, u uniform in (-0.1, 0.1), plain or
/// double-quantized; the same seed gives the same weight.
func randomQuantizedWeight(rows: Int, cols: Int, blockSize: Int, type: QuantType = .nf4, double: Bool, seed: UInt64,
                           absmaxFloor: Float = 0.01) throws -> QuantizedTensor {
    var rng = SeededRandom(seed: seed)
    let n = rows * cols, blocks = (n + blockSize - 1) / blockSize
    let packed = (0..<(n + 1) / 2).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    let absmax = (0..<blocks).map { _ in abs(rng.float(0.1)) + absmaxFloor }
    let stats: QuantStatistics = double ? .double(DoubleQuantState.quantize(absmax: absmax)) : .plain(absmax: absmax)
    return try QuantizedTensor(shape: [rows, cols], quantType: type, blockSize: blockSize, packed: packed, statistics: stats)
}
