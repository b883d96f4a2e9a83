import Foundation

/// One compiled training step without the update: forward, loss and backward on one batch,
/// leaving ∂loss/∂p in `parameters`' gradient slices (overwritten on every run) and returning the
/// loss. The `Trainer` adds accumulation, clipping, the schedule and the optimizer on top, so any
/// model (a graph file, the causal-LM) trains through it.
public protocol TrainingStep: AnyObject {
    var parameters: ParameterStore { get }
    func run(_ batch: TrainingBatch) throws -> Float
    /// The plan `run(batch)` runs (compiled now if it is not yet), so a trainer can watch its
    /// steps (`PlanStepObserver`); nil when the step runs no single plan.
    func plan(for batch: TrainingBatch) throws -> ExecutablePlan?
}

extension TrainingStep {
    public func plan(for batch: TrainingBatch) throws -> ExecutablePlan? { nil }
}

/// A `TrainingStep` from a compiled plan whose graph asked for `backward(from: loss, parameters:)`
/// (no optimizer in the plan) and outputs the loss as `lossOutput`.
public final class PlanTrainingStep: TrainingStep {
    public let plan: ExecutablePlan
    public let parameters: ParameterStore
    public let lossOutput: String

    public init(plan: ExecutablePlan, parameters: ParameterStore, lossOutput: String) {
        self.plan = plan
        self.parameters = parameters
        self.lossOutput = lossOutput
    }

    public func plan(for batch: TrainingBatch) throws -> ExecutablePlan? { plan }

    public func run(_ batch: TrainingBatch) throws -> Float {
        let result = try plan.run(batch.feeds, ids: batch.ids)
        guard let loss = result[lossOutput]?.scalars.first else {
            throw QLoraError.invalidArgument("the training plan has no output '\(lossOutput)'")
        }
        return loss
    }
}
