import Foundation
import QLoRA

let selectedTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["QLORA_FUZZ_TARGET"] ?? ""
    guard let t = FuzzTarget(rawValue: name) else {
        fatalError("set QLORA_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return t
}()

/// libFuzzer's entry point (its own main() calls it; this target is built with -sanitize=fuzzer).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    do { try selectedTarget.run(bytes) } catch is QLoraError {
        // a clean rejection
    } catch {
        fatalError("\(selectedTarget.rawValue): a non-QLoraError escaped: \(error)")
    }
    return 0
}
