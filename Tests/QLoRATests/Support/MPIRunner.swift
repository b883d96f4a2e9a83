import Foundation
import XCTest

/// Runs the built `qlora` under Open MPI's `mpirun` with loopback ranks (tests skip when mpirun
/// is not installed: `make deps` installs openmpi-bin).
///
/// Flags and environment that make Open MPI work in a container as root on 2 cores:
/// --allow-run-as-root (the tests run as root), --oversubscribe (more ranks than cores), and
/// `OMPI_MCA_btl_vader_single_copy_mechanism=none` (the shared-memory transport's single-copy
/// path uses process_vm_readv / CMA, which a container's ptrace policy may refuse; plain
/// copy-in/copy-out through shared memory needs no permission). `timeout` ends a hung job.
enum MPIRunner {
    static let mpirun: URL? = {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let url = URL(fileURLWithPath: String(dir)).appendingPathComponent("mpirun")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        return nil
    }()

    static func require() throws -> URL {
        guard let mpirun else { throw XCTSkip("mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev, or make deps): the MPI tests are skipped") }
        return mpirun
    }

    static var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none"
        return env
    }

    static let flags = ["--allow-run-as-root", "--oversubscribe"]

    /// `mpirun -np ranks qlora args…`.
    static func run(ranks: Int, _ args: [String], seconds: Int = 120, extraEnvironment: [String: String] = [:]) throws -> CLIRunner.Result {
        let mpirun = try require()
        return try CLIRunner.run(URL(fileURLWithPath: "/usr/bin/timeout"),
                                 ["\(seconds)", mpirun.path] + flags + ["-np", "\(ranks)", CLIRunner.executable.path] + args,
                                 environment: environment.merging(extraEnvironment) { $1 })
    }

    /// One rank per command (`mpirun -np 1 A : -np 1 B …`): each command is a program and its arguments.
    static func runEach(_ commands: [[String]], seconds: Int = 120) throws -> CLIRunner.Result {
        let mpirun = try require()
        var args = ["\(seconds)", mpirun.path] + flags
        for (i, c) in commands.enumerated() { args += (i == 0 ? [] : [":"]) + ["-np", "1"] + c }
        return try CLIRunner.run(URL(fileURLWithPath: "/usr/bin/timeout"), args, environment: environment)
    }
}
