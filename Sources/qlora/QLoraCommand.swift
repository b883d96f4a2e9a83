import ArgumentParser
import Foundation
import QLoRA

@main
struct QLoraCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qlora",
        abstract: "Quantize, inspect and run QLoRA layers on the CPU.",
        subcommands: [QuantizeCommand.self, DequantizeCommand.self, DumpCommand.self, InspectCommand.self, RunCommand.self,
                      DemoCommand.self])
}

/// Prints one clear line on stderr and exits non-zero: the CLI's way to report a QLoraError.
func fail(_ error: Error) -> ExitCode {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    return ExitCode.failure
}
