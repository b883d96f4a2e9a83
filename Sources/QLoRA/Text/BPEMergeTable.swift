/// Open-addressing hash table from a token pair (left id, right id) to its merge: rank and the
/// merged token's id. Lookups are the inner loop of BPE, so no Dictionary hashing.
struct BPEMergeTable: Sendable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private let mask: Int
    private static let empty = UInt64.max

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        keys = [UInt64](repeating: BPEMergeTable.empty, count: size)
        values = [UInt64](repeating: 0, count: size)
        mask = size - 1
    }

    @inline(__always)
    private static func slot(_ key: UInt64, _ mask: Int) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    /// Adds a merge unless the pair already has one (the first, lowest rank, wins).
    mutating func insert(left: UInt32, right: UInt32, rank: UInt32, merged: UInt32) {
        let key = UInt64(left) << 32 | UInt64(right)
        var s = BPEMergeTable.slot(key, mask)
        while keys[s] != BPEMergeTable.empty {
            if keys[s] == key { return }
            s = (s + 1) & mask
        }
        keys[s] = key
        values[s] = UInt64(rank) << 32 | UInt64(merged)
    }

    /// (rank << 32 | merged id), or UInt64.max when the pair does not merge.
    @inline(__always)
    func lookup(_ left: UInt32, _ right: UInt32) -> UInt64 {
        let key = UInt64(left) << 32 | UInt64(right)
        var s = BPEMergeTable.slot(key, mask)
        return keys.withUnsafeBufferPointer { k in
            while true {
                let x = k[s]
                if x == key { return values[s] }
                if x == BPEMergeTable.empty { return UInt64.max }
                s = (s + 1) & mask
            }
        }
    }
}
