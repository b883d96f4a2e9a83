import Foundation
import CQLoRAKernels

/// A frozen 4-bit weight shared by a layer and the plans compiled from it, held at a stable
/// address for the kernels, with the optional f32 copy the cached mode uses (made once, on
/// demand, shared by every cached plan of the weight).
///
/// In memory the codes are in the "paired blocks" nibble order when the shape allows it
/// (`cq_pairing_supported`: blocks of a multiple of 64, whole block pairs per row): the small-M
/// kernels decode it with fewer shuffles (docs/llama.md). `weight` gives bitsandbytes' order
/// back, so everything saved or compared is unchanged. `QLORA_NIBBLE_ORDER=bnb` keeps
/// bitsandbytes' order in memory (to measure the difference).
public final class QuantizedWeightStorage: @unchecked Sendable {
    public let name: String
    public let shape: [Int]
    public let quantType: QuantType
    public let blockSize: Int
    public let isDoubleQuantized: Bool
    public let memoryBytes: Int
    private let statistics: QuantStatistics   // small: kept as Swift arrays for reconstruction
    private let packed: AlignedBuffer
    private let packedCount: Int
    /// Whether `packed` holds the paired nibble order (else bitsandbytes').
    public let isPaired: Bool
    private let absmax: AlignedBuffer?         // plain statistics
    private let qabsmax: AlignedBuffer?        // double quant
    private let code2: AlignedBuffer?
    private let absmax2: AlignedBuffer?
    private let offset: Float
    private let blockSize2: Int
    private var cache: AlignedBuffer?
    private let cacheLock = NSLock()

    /// Whether weights are paired when their shape allows (false with QLORA_NIBBLE_ORDER=bnb).
    public static let pairsByDefault: Bool = ProcessInfo.processInfo.environment["QLORA_NIBBLE_ORDER"] != "bnb"

    public init(name: String, weight: QuantizedTensor, pairNibbles: Bool = QuantizedWeightStorage.pairsByDefault) {
        self.name = name
        shape = weight.shape
        quantType = weight.quantType
        blockSize = weight.blockSize
        isDoubleQuantized = weight.isDoubleQuantized
        memoryBytes = weight.memoryBytes
        statistics = weight.statistics
        // 64 bytes of padding: the paired tiles' offset loads read up to 3 bytes past the end.
        packed = AlignedBuffer(bytes: weight.packed, padding: 64)
        packedCount = weight.packed.count
        let rows = weight.shape.count >= 2 ? weight.shape.dropLast().reduce(1, *) : 1
        isPaired = pairNibbles && cq_pairing_supported(Int64(rows), Int64(weight.shape.last ?? 1), Int32(weight.blockSize)) != 0
        if isPaired { // the shape was checked just above: the conversion cannot refuse it
            let rc = cq_pair_nibbles(packed.bytes, Int64(weight.count), Int32(weight.blockSize), 1,
                                     Int32(Runtime.defaultThreads))
            precondition(rc == 0, "cq_pair_nibbles refused a shape cq_pairing_supported accepted")
        }
        switch weight.statistics {
        case let .plain(a):
            absmax = AlignedBuffer(floats: a); qabsmax = nil; code2 = nil; absmax2 = nil; offset = 0; blockSize2 = 0
        case let .double(s):
            absmax = nil
            qabsmax = AlignedBuffer(bytes: s.quantizedAbsmax)
            code2 = AlignedBuffer(floats: s.code2)
            absmax2 = AlignedBuffer(floats: s.absmax2)
            offset = s.offset
            blockSize2 = s.blockSize2
        }
    }

    /// Storage bits per weight element (see `QuantizedTensor.bitsPerParameter`).
    public var bitsPerParameter: Double {
        switch statistics {
        case .plain: return 4 + 32 / Double(blockSize)
        case let .double(s): return 4 + (8 + 32 / Double(s.blockSize2)) / Double(blockSize)
        }
    }

    /// The weight as a value, in bitsandbytes' order. This copies the packed bytes: read the
    /// metadata from the storage's own properties instead.
    public var weight: QuantizedTensor {
        var bytes = packed.byteArray(count: packedCount)
        if isPaired {
            let rc = bytes.withUnsafeMutableBufferPointer {
                cq_pair_nibbles($0.baseAddress, Int64(count), Int32(blockSize), 0, Int32(Runtime.defaultThreads))
            }
            precondition(rc == 0, "cq_pair_nibbles refused a shape it paired")
        }
        // The parts were validated when the original tensor was built.
        return try! QuantizedTensor(shape: shape, quantType: quantType, blockSize: blockSize, packed: bytes,
                                    statistics: statistics, name: name)
    }

    var rows: Int { shape.count >= 2 ? shape.dropLast().reduce(1, *) : 1 }
    var cols: Int { shape.last ?? 1 }
    var count: Int { shape.reduce(1, *) }

    /// The C view; its pointers stay valid while this storage lives.
    var kernelView: cq_qweight {
        cq_qweight(packed: UnsafePointer(packed.bytes), rows: Int64(rows), cols: Int64(cols), block_size: Int32(blockSize),
                   codebook: cq_codebook(quantType == .nf4 ? CQ_NF4 : CQ_FP4),
                   absmax: absmax.map { UnsafePointer($0.floats) },
                   qabsmax: qabsmax.map { UnsafePointer($0.bytes) },
                   code2: code2.map { UnsafePointer($0.floats) },
                   absmax2: absmax2.map { UnsafePointer($0.floats) },
                   offset: offset, block_size2: Int32(blockSize2), paired: isPaired ? 1 : 0)
    }

    /// Calls `body` with the C view (benchmarks, external kernels); valid only inside `body`.
    public func withKernelView<R>(_ body: (UnsafePointer<cq_qweight>) throws -> R) rethrows -> R {
        var view = kernelView
        return try withExtendedLifetime(self) { try body(&view) }
    }

    var isCached: Bool { cacheLock.lock(); defer { cacheLock.unlock() }; return cache != nil }
    var cacheBytes: Int { isCached ? count * 4 : 0 }

    /// The dequantized f32 weight, made on first use and kept until `dropCache`.
    func dequantized(threads: Int) -> AlignedBuffer {
        cacheLock.lock(); defer { cacheLock.unlock() }
        if let cache { return cache }
        let buffer = AlignedBuffer(byteCount: count * 4)
        var view = kernelView
        cq_dequantize_4bit(&view, buffer.floats, Int32(threads))
        cache = buffer
        return buffer
    }

    /// Forgets the storage's reference to the f32 copy (plans that use it keep theirs alive).
    func dropCache() { cacheLock.lock(); cache = nil; cacheLock.unlock() }
}
