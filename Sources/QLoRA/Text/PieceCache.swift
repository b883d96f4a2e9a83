/// The per-call cache of BPE results by piece bytes: open addressing on a hash of the bytes, the
/// keys and ids kept in two flat arrays, so a lookup allocates nothing.
struct PieceCache {
    private var slots: [Int32]          // entry index + 1, 0 = empty
    private var hashes: [UInt64] = []
    private var keyStart: [Int32] = []  // entry k's bytes: keys[keyStart[k]..<keyStart[k+1]]
    private var idStart: [Int32] = []   // entry k's ids: ids[idStart[k]..<idStart[k+1]]
    private var keys: [UInt8] = []
    private(set) var ids: [UInt32] = []
    private var mask: Int
    let capacity: Int

    /// Starts small (short texts pay little) and doubles up to 2 × `capacity` slots.
    init(capacity: Int = 1 << 15) {
        self.capacity = capacity
        slots = [Int32](repeating: 0, count: 64)
        mask = 63
        keyStart = [0]
        idStart = [0]
    }

    var count: Int { hashes.count }

    @inline(__always)
    static func hash(_ b: UnsafeBufferPointer<UInt8>, _ r: Range<Int>) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325 ^ UInt64(r.count)
        for i in r { h = (h ^ UInt64(b[i])) &* 0x0000_0100_0000_01B3 }
        return h ^ (h >> 29)
    }

    /// The range in `ids` of the cached result for b[r], or nil.
    @inline(__always)
    func find(_ b: UnsafeBufferPointer<UInt8>, _ r: Range<Int>, hash h: UInt64) -> Range<Int>? {
        var s = Int(truncatingIfNeeded: h) & mask
        while true {
            let e = Int(slots[s])
            if e == 0 { return nil }
            let k = e - 1
            if hashes[k] == h {
                let ks = Int(keyStart[k]), ke = Int(keyStart[k + 1])
                if ke - ks == r.count {
                    var same = true
                    var j = r.lowerBound
                    for x in ks..<ke { if keys[x] != b[j] { same = false; break }; j += 1 }
                    if same { return Int(idStart[k])..<Int(idStart[k + 1]) }
                }
            }
            s = (s + 1) & mask
        }
    }

    /// Remembers `result` for b[r] (call only after `find` returned nil; clears itself when full).
    mutating func insert(_ b: UnsafeBufferPointer<UInt8>, _ r: Range<Int>, hash h: UInt64, result: ArraySlice<UInt32>) {
        if hashes.count >= capacity {
            for i in slots.indices { slots[i] = 0 }
            hashes.removeAll(keepingCapacity: true)
            keys.removeAll(keepingCapacity: true)
            ids.removeAll(keepingCapacity: true)
            keyStart = [0]
            idStart = [0]
        }
        if (hashes.count + 1) * 2 > slots.count {
            slots = [Int32](repeating: 0, count: slots.count * 2)
            mask = slots.count - 1
            for (k, hk) in hashes.enumerated() {
                var s = Int(truncatingIfNeeded: hk) & mask
                while slots[s] != 0 { s = (s + 1) & mask }
                slots[s] = Int32(k + 1)
            }
        }
        var s = Int(truncatingIfNeeded: h) & mask
        while slots[s] != 0 { s = (s + 1) & mask }
        hashes.append(h)
        keys.append(contentsOf: b[r])
        keyStart.append(Int32(keys.count))
        ids.append(contentsOf: result)
        idStart.append(Int32(ids.count))
        slots[s] = Int32(hashes.count)
    }
}
