import Foundation

/// The parts of a PEFT `adapter_config.json` (LoraConfig) this package uses. Reading keeps the
/// whole JSON object so writing back an adapter that was read reproduces its config file.
public struct LoraAdapterConfig: Sendable, Equatable {
    public var r: Int
    public var loraAlpha: Double
    public var useRSLoRA: Bool
    /// Module name suffixes the adapter targets (PEFT's list form).
    public var targetModules: [String]
    /// Per-module rank overrides: pattern → r (PEFT rank_pattern).
    public var rankPattern: [String: Int]
    /// Per-module alpha overrides: pattern → alpha (PEFT alpha_pattern).
    public var alphaPattern: [String: Double]
    public var baseModelNameOrPath: String?
    /// The config as read (nil for a config built in code).
    var raw: JSONValue?

    public init(r: Int, loraAlpha: Double, useRSLoRA: Bool = false, targetModules: [String],
                rankPattern: [String: Int] = [:], alphaPattern: [String: Double] = [:], baseModelNameOrPath: String? = nil) {
        self.r = r
        self.loraAlpha = loraAlpha
        self.useRSLoRA = useRSLoRA
        self.targetModules = targetModules
        self.rankPattern = rankPattern
        self.alphaPattern = alphaPattern
        self.baseModelNameOrPath = baseModelNameOrPath
    }

    public static func == (a: LoraAdapterConfig, b: LoraAdapterConfig) -> Bool {
        a.r == b.r && a.loraAlpha == b.loraAlpha && a.useRSLoRA == b.useRSLoRA && a.targetModules == b.targetModules
            && a.rankPattern == b.rankPattern && a.alphaPattern == b.alphaPattern && a.baseModelNameOrPath == b.baseModelNameOrPath
    }

    /// PEFT's pattern lookup: an exact key, else the first key matching `(.*\.)?key$`.
    static func patternKey(_ keys: some Collection<String>, _ module: String) -> String? {
        if keys.contains(module) { return module }
        return keys.sorted().first { key in
            guard let regex = try? Regex("^(.*\\.)?(\(key))$") else { return false }
            return module.wholeMatch(of: regex) != nil
        }
    }

    public func rank(for module: String) -> Int {
        Self.patternKey(rankPattern.keys, module).map { rankPattern[$0]! } ?? r
    }

    public func alpha(for module: String) -> Double {
        Self.patternKey(alphaPattern.keys, module).map { alphaPattern[$0]! } ?? loraAlpha
    }

    /// alpha / r, or alpha / sqrt(r) with rsLoRA, computed in double like PEFT and rounded to float.
    public func scaling(for module: String) -> Float {
        let r = Double(rank(for: module)), alpha = alpha(for: module)
        return Float(useRSLoRA ? alpha / r.squareRoot() : alpha / r)
    }

    /// Whether PEFT would have put a LoRA on `module` (target name equal to the module path or a
    /// suffix of it after a dot).
    public func targets(_ module: String) -> Bool { Self.matches(module, targets: targetModules) }

    /// PEFT's suffix matching: `module` is targeted when it equals a target or ends with "." + target.
    public static func matches(_ module: String, targets: [String]) -> Bool {
        targets.contains { module == $0 || module.hasSuffix("." + $0) }
    }
}

extension LoraAdapterConfig {
    /// Parses adapter_config.json, rejecting LoRA variants this package cannot run.
    static func parse(_ bytes: [UInt8], file: String) throws -> LoraAdapterConfig {
        func bad(_ field: String, _ reason: String) -> QLoraError { .malformedFile(file: file, field: field, reason: reason) }
        let root = try JSONValue.parse(bytes, file: file, field: "adapter config")
        guard case .object = root else { throw bad("adapter config", "must be a JSON object, got \(root.kind)") }
        func flag(_ key: String) throws -> Bool {
            guard let v = root[key], !v.isNull else { return false }
            guard case let .bool(b) = v else { throw bad(key, "must be a boolean, got \(v.kind)") }
            return b
        }
        if let t = root["peft_type"], !t.isNull {
            guard case let .string(s) = t else { throw bad("peft_type", "must be a string, got \(t.kind)") }
            guard s == "LORA" else { throw QLoraError.unsupported("\(file): peft_type \"\(s)\" (only LORA adapters are supported)") }
        }
        for key in ["use_dora", "lora_bias", "use_qalora"] where try flag(key) {
            throw QLoraError.unsupported("\(file): \(key) = true")
        }
        for key in ["layer_replication", "modules_to_save", "trainable_token_indices", "target_parameters"] {
            if let v = root[key], !v.isNull, v != .array([]) { throw QLoraError.unsupported("\(file): \(key) is set") }
        }
        guard let rv = root["r"] else { throw bad("r", "missing") }
        guard case let .int(r) = rv, r > 0 else { throw bad("r", "must be a positive integer") }
        guard let av = root["lora_alpha"] else { throw bad("lora_alpha", "missing") }
        guard let alpha = av.doubleValue, alpha >= 0 else { throw bad("lora_alpha", "must be a number >= 0") }
        var targets: [String] = []
        switch root["target_modules"] ?? .null {
        case .null: break
        case let .string(s): targets = [s]
        case let .array(items):
            targets = try items.map {
                guard case let .string(s) = $0 else { throw bad("target_modules", "must hold strings") }
                return s
            }
        case let v: throw bad("target_modules", "must be a list or a string, got \(v.kind)")
        }
        var config = LoraAdapterConfig(r: r, loraAlpha: alpha, useRSLoRA: try flag("use_rslora"), targetModules: targets)
        if case let .string(s) = root["base_model_name_or_path"] ?? .null { config.baseModelNameOrPath = s }
        if let v = root["rank_pattern"], !v.isNull {
            guard case let .object(members) = v else { throw bad("rank_pattern", "must be an object") }
            for (k, value) in members {
                guard case let .int(i) = value, i > 0 else { throw bad("rank_pattern.\(k)", "must be a positive integer") }
                config.rankPattern[k] = i
            }
        }
        if let v = root["alpha_pattern"], !v.isNull {
            guard case let .object(members) = v else { throw bad("alpha_pattern", "must be an object") }
            for (k, value) in members {
                guard let d = value.doubleValue, d >= 0 else { throw bad("alpha_pattern.\(k)", "must be a number >= 0") }
                config.alphaPattern[k] = d
            }
        }
        config.raw = root
        return config
    }

    /// The adapter_config.json text PEFT writes (json.dumps(indent=2, sort_keys=True)): the config
    /// as read with our fields updated, or PEFT 0.21.2's LoraConfig fields for a new config.
    func jsonText() -> String {
        var members: [String: JSONValue] = [:]
        if case let .object(m)? = raw { for (k, v) in m { members[k] = v } } else { members = Self.peftDefaults }
        let alpha: JSONValue = loraAlpha == loraAlpha.rounded() && abs(loraAlpha) < 1e15
            ? .int(Int(loraAlpha)) : .number(loraAlpha, text: "")
        members["r"] = .int(r)
        members["lora_alpha"] = alpha
        members["use_rslora"] = .bool(useRSLoRA)
        // Keep the order as read when the set is unchanged (PEFT writes a Python set's order).
        var oldTargets: [String] = []
        if case let .array(old)? = members["target_modules"] {
            oldTargets = old.compactMap { if case let .string(s) = $0 { return s } else { return nil } }
        }
        if Set(oldTargets) != Set(targetModules) || oldTargets.count != targetModules.count {
            members["target_modules"] = .array(targetModules.map { .string($0) })
        }
        members["rank_pattern"] = .object(rankPattern.keys.sorted().map { ($0, JSONValue.int(rankPattern[$0]!)) })
        members["alpha_pattern"] = .object(alphaPattern.keys.sorted().map { ($0, JSONValue.number(alphaPattern[$0]!, text: "")) })
        members["base_model_name_or_path"] = baseModelNameOrPath.map { .string($0) } ?? .null
        return JSONValue.object(members.keys.sorted().map { ($0, members[$0]!) }).pythonDumps(indent: 2)
    }

    /// Every field PEFT 0.21.2's save_pretrained writes for a LoraConfig, at its default.
    static let peftDefaults: [String: JSONValue] = [
        "alora_invocation_tokens": .null, "alpha_pattern": .object([]), "arrow_config": .null, "auto_mapping": .null,
        "base_model_name_or_path": .null, "bias": .string("none"), "corda_config": .null, "ensure_weight_tying": .bool(false),
        "eva_config": .null, "exclude_modules": .null, "fan_in_fan_out": .bool(false), "inference_mode": .bool(true),
        "init_lora_weights": .bool(true), "kasa_config": .null, "layer_replication": .null, "layers_pattern": .null,
        "layers_to_transform": .null, "loftq_config": .object([]), "lora_alpha": .int(8), "lora_bias": .bool(false),
        "lora_dropout": .number(0, text: "0.0"), "lora_ga_config": .null, "megatron_config": .null,
        "megatron_core": .string("megatron.core"), "modules_to_save": .null, "monteclora_config": .null,
        "peft_type": .string("LORA"), "peft_version": .string("0.21.2"), "qalora_group_size": .int(16), "r": .int(8),
        "rank_pattern": .object([]), "revision": .null, "target_modules": .null, "target_parameters": .null,
        "task_type": .string("CAUSAL_LM"), "trainable_token_indices": .null, "use_bdlora": .null, "use_dora": .bool(false),
        "use_qalora": .bool(false), "use_rslora": .bool(false), "velora_config": .null,
    ]
}
