import Foundation

/// A training checkpoint directory: everything a resumed run needs to end with the same bits as
/// an uninterrupted one.
/// - `adapter_model.safetensors`, `adapter_config.json`: the adapter so far (PEFT's layout; written
///   by the caller, who knows the modules and config);
/// - `trainer_state.safetensors`: the flat parameter buffer ("parameters", bit-exact), the
///   optimizer state ("adamw.m", "adamw.v", "adamw.step" or "sgd.momentum");
/// - `trainer_state.json`: the completed optimizer steps, micro-batches consumed (the dropout
///   counter and the shuffle position), the seed and the optimizer's kind.
/// The directory is written under a temporary name and renamed into place, so a crash leaves
/// either the previous checkpoint or the new one, never a torn one.
public struct TrainingCheckpoint: Sendable, Equatable {
    public var step: Int
    public var microBatches: Int
    public var seed: UInt64
    public var optimizer: String

    static let stateFile = "trainer_state.json"
    static let tensorFile = "trainer_state.safetensors"

    static func optimizerName(_ method: Optimizer.Method) -> String {
        switch method {
        case .sgd: return "sgd"
        case .adamW: return "adamw"
        }
    }

    /// Writes the checkpoint of `optimizer` (and its store) into `directory` atomically;
    /// `writeExtra` adds files (the adapter) into the temporary directory first.
    static func write(_ state: TrainingCheckpoint, optimizer: Optimizer, to directory: URL,
                      writeExtra: ((URL) throws -> Void)?) throws {
        let fm = FileManager.default
        let parent = directory.deletingLastPathComponent()
        let temp = parent.appendingPathComponent(".\(directory.lastPathComponent).tmp-\(getpid())")
        try? fm.removeItem(at: temp)
        do {
            try fm.createDirectory(at: temp, withIntermediateDirectories: true)
        } catch {
            throw QLoraError.io(file: temp.path, reason: "cannot create the checkpoint directory: \(error.localizedDescription)")
        }
        do {
            try writeExtra?(temp)
            let writer = try SafeTensorsWriter(url: temp.appendingPathComponent(tensorFile), metadata: ["format": "qlora-trainer"])
            let flat = optimizer.parameters.flatValues
            try writer.add("parameters", floats: flat, shape: [flat.count])
            for (name, t) in optimizer.stateTensors.sorted(by: { $0.key < $1.key }) { try writer.add(name, tensor: t) }
            _ = try writer.commit()
            let json = "{\"step\": \(state.step), \"micro_batches\": \(state.microBatches), \"seed\": \"\(state.seed)\", \"optimizer\": \"\(state.optimizer)\"}\n"
            try writeAtomically(Array(json.utf8), to: temp.appendingPathComponent(stateFile))
            // Swap in: the old checkpoint (if any) moves aside first, then goes.
            let old = parent.appendingPathComponent(".\(directory.lastPathComponent).old-\(getpid())")
            let hadOld = fm.fileExists(atPath: directory.path)
            if hadOld { try fm.moveItem(at: directory, to: old) }
            try fm.moveItem(at: temp, to: directory)
            if hadOld { try? fm.removeItem(at: old) }
        } catch {
            try? fm.removeItem(at: temp)
            if let e = error as? QLoraError { throw e }
            throw QLoraError.io(file: directory.path, reason: "cannot write the checkpoint: \(error.localizedDescription)")
        }
    }

    /// Reads `directory`'s state and restores the flat parameters and optimizer state into `optimizer`.
    static func restore(from directory: URL, into optimizer: Optimizer) throws -> TrainingCheckpoint {
        let stateURL = directory.appendingPathComponent(stateFile)
        guard let data = FileManager.default.contents(atPath: stateURL.path) else {
            throw QLoraError.invalidArgument("--resume \(directory.path): no \(stateFile) (not a checkpoint directory written by qlora train)")
        }
        let json = try JSONValue.parse(Array(data), file: stateURL.path, field: "trainer state")
        func int(_ key: String) throws -> Int {
            guard case let .int(v)? = json[key], v >= 0 else {
                throw QLoraError.malformedFile(file: stateURL.path, field: key, reason: "expected a non-negative integer")
            }
            return v
        }
        guard case let .string(name)? = json["optimizer"] else {
            throw QLoraError.malformedFile(file: stateURL.path, field: "optimizer", reason: "expected \"adamw\" or \"sgd\"")
        }
        let expected = optimizerName(optimizer.method)
        guard name == expected else {
            throw QLoraError.invalidArgument("--resume \(directory.path): the checkpoint was written with optimizer \(name), this run uses \(expected)")
        }
        let seedText: UInt64
        if case let .string(text)? = json["seed"], let s = UInt64(text) { seedText = s } else {
            throw QLoraError.malformedFile(file: stateURL.path, field: "seed", reason: "expected an unsigned integer as a string")
        }
        let state = TrainingCheckpoint(step: try int("step"), microBatches: try int("micro_batches"), seed: seedText, optimizer: name)
        let file = try SafeTensorsFile(url: directory.appendingPathComponent(tensorFile))
        var tensors: [String: Tensor] = [:]
        for n in file.names { tensors[n] = try file.tensor(n) }
        guard let flat = tensors["parameters"] else {
            throw QLoraError.missingTensor(file: file.path, name: "parameters", neededBy: "--resume (the flat parameter buffer)", suggestions: [])
        }
        try optimizer.parameters.restoreFlatValues(flat.scalars, source: file.path)
        try optimizer.restoreState(tensors, source: file.path)
        return state
    }
}
