import ArgumentParser
import Foundation
import QLoRA

@main
struct QLoraCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qlora",
        abstract: "Quantize, inspect and run QLoRA layers on the CPU.",
        version: QLoraCommand.version,
        subcommands: [QuantizeCommand.self, DequantizeCommand.self, DumpCommand.self, InspectCommand.self, RunCommand.self, TrainCommand.self, MergeCommand.self,
                      GenerateCommand.self, ChatCommand.self, TokenizeCommand.self, PackCommand.self, DemoCommand.self, SynthCommand.self])

    static let version = "0.15.0"

    /// Parses and runs the command. Every user error — bad option values, unknown options,
    /// missing arguments, and every QLoraError a command reports — is one `error: …` line on
    /// stderr and exit status 1; --help and --version print to stdout and exit 0.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let code as ExitCode {
            // A command that already reported its error (fail) or its verdict (demo).
            Foundation.exit(code.rawValue)
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) } // --help, --version
            FileHandle.standardError.write(Data("error: \(oneLine(message(for: error)))\n".utf8))
            Foundation.exit(ExitCode.failure.rawValue)
        }
    }

    /// ArgumentParser's message without its "Error: " prefix and help/usage lines, on one line.
    static func oneLine(_ message: String) -> String {
        let lines = message.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("Help:") && !$0.hasPrefix("Usage:") && !$0.hasPrefix("See '") }
        var text = lines.joined(separator: "; ")
        if text.hasPrefix("Error: ") { text.removeFirst("Error: ".count) }
        return text.isEmpty ? "invalid command line (see qlora --help)" : text
    }
}

/// Prints one clear line on stderr and exits non-zero: the CLI's way to report a QLoraError.
func fail(_ error: Error) -> ExitCode {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    return ExitCode.failure
}
