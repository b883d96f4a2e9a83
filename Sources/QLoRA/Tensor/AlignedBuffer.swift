import CQLoRAKernels
import Foundation

/// A fixed-size, 64-byte-aligned, zero-initialised allocation whose address never moves, so
/// compiled plans can hand raw pointers to the C kernels for as long as the owner lives. From
/// 2 MiB on it is huge-page aligned and advised for transparent huge pages (cq_alloc_aligned).
final class AlignedBuffer: @unchecked Sendable {
    let byteCount: Int
    let raw: UnsafeMutableRawPointer

    init(byteCount: Int) {
        self.byteCount = byteCount
        guard let p = cq_alloc_aligned(max(byteCount, 64)) else { fatalError("out of memory: \(byteCount) bytes") }
        raw = p
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: max(byteCount, 64))
    }

    convenience init(floats: [Float]) {
        self.init(byteCount: floats.count * 4)
        floats.withUnsafeBytes { raw.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    /// The bytes, then `padding` zero bytes (for kernels whose loads may run a little past the end).
    convenience init(bytes: [UInt8], padding: Int = 0) {
        self.init(byteCount: bytes.count + padding)
        bytes.withUnsafeBytes { raw.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    var floats: UnsafeMutablePointer<Float> { raw.assumingMemoryBound(to: Float.self) }
    var bytes: UnsafeMutablePointer<UInt8> { raw.assumingMemoryBound(to: UInt8.self) }

    func floatArray(count: Int) -> [Float] { Array(UnsafeBufferPointer(start: floats, count: count)) }
    func byteArray(count: Int) -> [UInt8] { Array(UnsafeBufferPointer(start: bytes, count: count)) }

    deinit { cq_free_aligned(raw) }
}

/// Floats at an offset inside an aligned buffer: a tensor's own allocation, or its slice of a
/// flat buffer shared with others (`ParameterStore`). Keeps the buffer alive.
struct FloatRegion: @unchecked Sendable {
    let owner: AlignedBuffer
    let offset: Int

    init(count: Int) { owner = AlignedBuffer(byteCount: count * 4); offset = 0 }
    init(in owner: AlignedBuffer, at offset: Int) { self.owner = owner; self.offset = offset }

    var floats: UnsafeMutablePointer<Float> { owner.floats + offset }
}
