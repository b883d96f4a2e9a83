import Foundation

/// Sizes as people write them on a command line: "512M", "2G", "1.5GiB", "800MB", "65536".
/// K, M, G and T are binary (1024-based, as `free -h` and Docker read them); a trailing "B" or
/// "iB" changes nothing. Bare numbers are bytes.
public enum ByteSize {
    public static func parse(_ text: String, option: String) throws -> Int {
        let s = text.trimmingCharacters(in: .whitespaces)
        var digits = Substring(s)
        var unit = ""
        while let last = digits.last, last.isLetter { unit = String(last) + unit; digits.removeLast() }
        let scale: Double
        switch unit.uppercased() {
        case "", "B": scale = 1
        case "K", "KB", "KIB": scale = 1024
        case "M", "MB", "MIB": scale = 1024 * 1024
        case "G", "GB", "GIB": scale = 1024 * 1024 * 1024
        case "T", "TB", "TIB": scale = 1024 * 1024 * 1024 * 1024
        default: throw QLoraError.invalidArgument("\(option) expects a size such as 512M or 2G (units K, M, G, T), got \"\(text)\"")
        }
        guard let value = Double(digits.trimmingCharacters(in: .whitespaces)), value.isFinite, value > 0,
              value * scale >= 1, value * scale < 9.0e18 else {
            throw QLoraError.invalidArgument("\(option) expects a positive size such as 512M or 2G, got \"\(text)\"")
        }
        return Int((value * scale).rounded(.down))
    }
}
