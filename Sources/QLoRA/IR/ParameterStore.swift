/// Trainable tensors gathered end to end into one flat buffer, with their gradients end to end in
/// a second one of the same layout: an optimizer step is then one kernel over one buffer, and a
/// data-parallel all-reduce of the gradients one call.
///
/// Gathering moves each parameter's values into the flat buffer; the parameters stay the same
/// objects, so layers and plans compiled before keep working (plans look up the address on every
/// run). Each tensor starts on a 64-byte boundary (the kernels' alignment); the gaps hold zeros in
/// both buffers, so an elementwise optimizer over the whole buffer leaves them zero.
public final class ParameterStore: @unchecked Sendable {
    public let parameters: [ParameterStorage]
    /// One accumulator per parameter (same shape), slices of the flat gradient buffer; steps add
    /// into them in place (`Graph.state`, `Graph.accumulate`).
    public let gradients: [StateStorage]
    /// Where each parameter starts in the flat buffers, in floats.
    public let offsets: [Int]
    /// The flat buffers' length in floats (gaps included).
    public let count: Int
    let values: AlignedBuffer
    let gradientValues: AlignedBuffer
    /// The whole flat parameter buffer as one state (what an optimizer step updates in place).
    let flatParameterState: StateStorage
    /// The whole flat gradient buffer as one state (what an optimizer step reads).
    let flatGradientState: StateStorage
    /// The lock domains of the gathered parameters (usually one: the model's), for writing: what
    /// an optimizer step or a restore takes.
    let parameterLocks: LockSet
    /// The one lock of every gradient slice (the store's gradient domain).
    let gradientLock: ReadWriteLock

    /// Throws for a parameter listed twice, one another store already holds, or one not trainable.
    public init(gathering parameters: [ParameterStorage]) throws {
        var offsets: [Int] = [], next = 0
        for (i, p) in parameters.enumerated() {
            guard p.trainable else { throw QLoraError.invalidArgument("parameter '\(p.name)' is not trainable; a parameter store holds trainable tensors") }
            guard p.element == .float32 else { throw QLoraError.invalidArgument("parameter '\(p.name)' is \(p.element); a parameter store holds float32 tensors") }
            guard !p.isGathered else { throw QLoraError.invalidArgument("parameter '\(p.name)' is already in a parameter store") }
            guard !parameters[..<i].contains(where: { $0 === p }) else {
                throw QLoraError.invalidArgument("parameter '\(p.name)' is listed twice")
            }
            offsets.append(next)
            next += (p.count + 15) / 16 * 16
        }
        self.parameters = parameters
        self.offsets = offsets
        count = next
        let values = AlignedBuffer(byteCount: next * 4), gradientValues = AlignedBuffer(byteCount: next * 4)
        self.values = values
        self.gradientValues = gradientValues
        let gradientLock = ReadWriteLock()
        self.gradientLock = gradientLock
        parameterLocks = LockSet(writing: parameters.map(\.lock))
        gradients = zip(parameters, offsets).map { p, offset in
            StateStorage(name: "\(p.name).grad", shape: p.shape, region: FloatRegion(in: gradientValues, at: offset), locks: [gradientLock])
        }
        flatParameterState = StateStorage(name: "parameters", shape: [max(next, 1)], region: FloatRegion(in: values, at: 0),
                                          locks: parameters.map(\.lock))
        flatGradientState = StateStorage(name: "gradients", shape: [max(next, 1)], region: FloatRegion(in: gradientValues, at: 0),
                                          locks: [gradientLock])
        for (p, offset) in zip(parameters, offsets) { p.move(to: FloatRegion(in: values, at: offset)) }
    }

    /// A copy of the flat parameter buffer.
    public var flatValues: [Float] {
        flatParameterState.read { values.floatArray(count: count) }
    }

    /// A copy of the flat gradient buffer.
    public var flatGradients: [Float] {
        flatGradientState.read { gradientValues.floatArray(count: count) }
    }

    /// Sets every gradient to zero (the start of a new accumulation).
    public func zeroGradients() { flatGradientState.reset() }
}
