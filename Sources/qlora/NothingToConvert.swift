import Foundation
import QLoRA

/// `quantize` and `dequantize` on a file where they have nothing to do: said before any output
/// is written, so --strict can refuse and otherwise the user is warned.
enum NothingToConvert {
    /// Why `quantize` would quantize no tensor of `input`, or nil if it would quantize some.
    static func quantize(input: String, include: String?, exclude: String?) throws -> String? {
        let file = try SafeTensorsFile(url: URL(fileURLWithPath: input))
        let selector = try TensorSelector(include: include, exclude: exclude)
        let infos = try file.names.map { try file.info($0) }
        if infos.contains(where: selector.selects) { return nil }
        let candidates = try TensorSelector(include: ".", exclude: nil)
        let count = infos.filter(candidates.selects).count
        var filters: [String] = []
        if let include { filters.append("--include \"\(include)\"") }
        if let exclude { filters.append("--exclude \"\(exclude)\"") }
        if include == nil { filters.append("the default exclusion \"\(QuantizeOptions.defaultExclude)\"") }
        if count == 0 { return "no tensor of \(input) can be quantized (none is a 2-D floating-point *.weight)" }
        return "no tensor of \(input) is quantized: none of its \(count) 2-D floating-point *.weight tensors passes \(filters.joined(separator: " and "))"
    }

    /// Why `dequantize` would dequantize no tensor of `input`, or nil.
    static func dequantize(input: String) throws -> String? {
        let checkpoint = try BnbCheckpoint(url: URL(fileURLWithPath: input))
        return checkpoint.quantizedNames.isEmpty ? "\(input) has no bitsandbytes 4-bit tensors: nothing to dequantize" : nil
    }
}
