import Foundation
import XCTest
@testable import QLoRA

/// Large buffers (the 4-bit weights a decode step streams) start on a 2 MiB boundary and carry the
/// MADV_HUGEPAGE advice, so Linux can map them with transparent huge pages; small ones are 64-byte
/// aligned as before. Every buffer is zero-filled.
final class HugePageAllocationTests: XCTestCase {
    func testLargeBuffersAreHugePageAlignedAndZeroed() {
        let large = AlignedBuffer(byteCount: 6 << 20 | 100)
        XCTAssertEqual(Int(bitPattern: large.raw) % (2 << 20), 0, "a buffer of >= 2 MiB starts on a huge page")
        XCTAssertTrue(UnsafeBufferPointer(start: large.bytes, count: large.byteCount).allSatisfy { $0 == 0 })
        for size in [0, 1, 63, 1000, (2 << 20) - 1] {
            let small = AlignedBuffer(byteCount: size)
            XCTAssertEqual(Int(bitPattern: small.raw) % 64, 0, "size \(size)")
            XCTAssertTrue(UnsafeBufferPointer(start: small.bytes, count: max(size, 64)).allSatisfy { $0 == 0 })
        }
        let weight = AlignedBuffer(bytes: [UInt8](repeating: 0xA5, count: 3 << 20))
        XCTAssertEqual(Int(bitPattern: weight.raw) % (2 << 20), 0)
        XCTAssertEqual(weight.byteArray(count: 3 << 20), [UInt8](repeating: 0xA5, count: 3 << 20))
    }

    /// The mapping holding a large buffer is marked for huge pages ("hg" in its VmFlags). Linux
    /// with THP only: elsewhere the advice does not exist.
    func testLargeBufferMappingIsAdvisedForHugePages() throws {
        guard FileManager.default.fileExists(atPath: "/sys/kernel/mm/transparent_hugepage/enabled"),
              FileManager.default.fileExists(atPath: "/proc/self/smaps") else {
            throw XCTSkip("no transparent huge pages on this system")
        }
        let buffer = AlignedBuffer(byteCount: 8 << 20)
        let address = UInt(bitPattern: buffer.raw)
        // procfs files report size 0: read to the end rather than by size.
        let data = try XCTUnwrap(FileHandle(forReadingAtPath: "/proc/self/smaps")).readDataToEndOfFile()
        let flags = vmFlags(in: String(decoding: data, as: UTF8.self))
        let mapping = flags.first { $0.range.contains(address) }
        XCTAssertNotNil(mapping, "no mapping holds the buffer")
        XCTAssertTrue(mapping?.flags.contains("hg") ?? false, "VmFlags: \(mapping?.flags ?? [])")
    }

    /// (address range, VmFlags) of every mapping in /proc/self/smaps.
    private func vmFlags(in smaps: String) -> [(range: Range<UInt>, flags: [String])] {
        var result: [(range: Range<UInt>, flags: [String])] = []
        var current: Range<UInt>?
        for line in smaps.split(separator: "\n") {
            if let dash = line.firstIndex(of: "-"), let space = line.firstIndex(of: " "), dash < space,
               let lo = UInt(line[..<dash], radix: 16), let hi = UInt(line[line.index(after: dash)..<space], radix: 16) {
                current = lo..<hi
            } else if line.hasPrefix("VmFlags:"), let range = current {
                result.append((range, line.dropFirst("VmFlags:".count).split(separator: " ").map(String.init)))
            }
        }
        return result
    }
}
