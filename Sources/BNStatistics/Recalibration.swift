import Foundation
import ModelIR
import Runtime

/// The samples a recalibration reads: float32 values of the model's input size, one
/// sample after another, in batches. The data is read once per pass (see
/// `BatchNormRecalibration.passes(of:)`), so it must give the same samples each time.
public protocol CalibrationBatches {
    /// Calls `body` with each batch in turn.
    func forEachBatch(_ body: (UnsafeBufferPointer<Float>) throws -> Void) throws
}

extension Array: CalibrationBatches where Element == [Float] {
    public func forEachBatch(_ body: (UnsafeBufferPointer<Float>) throws -> Void) throws {
        for batch in self { try batch.withUnsafeBufferPointer(body) }
    }
}

/// Why a recalibration cannot run.
public enum RecalibrationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The model has no BatchNormalization layer (a folded model has none left).
    case noBatchNorm
    /// The data held no sample.
    case noSamples
    /// A BatchNormalization layer called more than once reads, through one call, the output
    /// of another: its statistics would have to be known before they are measured.
    case sharedLayerFeedsItself(layer: String)

    public var description: String {
        switch self {
        case .noBatchNorm:
            "the model has no BatchNormalization layer to recalibrate (a folded model has none left: recalibrate the unfolded model, then fold)"
        case .noSamples:
            "no images to compute statistics from"
        case let .sharedLayerFeedsItself(layer):
            "BatchNormalization layer '\(layer)' is called more than once and one call reads the output of another; its statistics cannot be recomputed in inference order"
        }
    }
}

/// Per-channel mean and population variance of a node's values over some samples
/// (per neuron for (N, features), per channel over N·H·W for (N, H, W, C), over N·steps for (N, steps, C)).
public struct ChannelStatistics: Equatable, Sendable {
    /// Values seen per channel (samples × positions).
    public var count: Int
    public var mean: [Double]
    /// Population variance: the mean squared deviation from `mean` (divided by `count`, not `count - 1`).
    public var variance: [Double] { m2.map { count > 0 ? $0 / Double(count) : 0 } }
    /// Sum of squared deviations from the mean.
    public var m2: [Double]

    public init(channels: Int) {
        count = 0
        mean = [Double](repeating: 0, count: channels)
        m2 = [Double](repeating: 0, count: channels)
    }

    /// Adds the statistics of other values (Chan et al.'s pairwise update: exact in real
    /// arithmetic, no cancellation in floating point).
    public mutating func merge(count otherCount: Int, mean otherMean: UnsafePointer<Double>, m2 otherM2: UnsafePointer<Double>) {
        guard otherCount > 0 else { return }
        let total = count + otherCount
        let weight = Double(otherCount) / Double(total)
        let cross = Double(count) * Double(otherCount) / Double(total)
        for c in mean.indices {
            let delta = otherMean[c] - mean[c]
            mean[c] += delta * weight
            m2[c] += otherM2[c] + delta * delta * cross
        }
        count = total
    }

    public mutating func merge(_ other: ChannelStatistics) {
        other.mean.withUnsafeBufferPointer { m in
            other.m2.withUnsafeBufferPointer { q in merge(count: other.count, mean: m.baseAddress!, m2: q.baseAddress!) }
        }
    }
}

/// What a recalibration changed in one BatchNormalization layer.
public struct BatchNormChange: Equatable, Sendable, CustomStringConvertible {
    public var layer: String
    /// Values per channel the new statistics were computed from.
    public var count: Int
    public var oldMean: [Float], newMean: [Float]
    public var oldVariance: [Float], newVariance: [Float]
    /// The pass that measured it (0: reads no other BatchNormalization layer's output).
    public var pass: Int

    /// The largest |new mean − old mean| over the channels.
    public var largestMeanShift: Float { zip(newMean, oldMean).map { abs($0 - $1) }.max() ?? 0 }
    /// new variance / old variance per channel: smallest, median, largest.
    public var varianceRatios: (min: Double, median: Double, max: Double) {
        let ratios = zip(newVariance, oldVariance).map { Double($0) / max(Double($1), .leastNormalMagnitude) }.sorted()
        guard !ratios.isEmpty else { return (1, 1, 1) }
        return (ratios[0], ratios[ratios.count / 2], ratios[ratios.count - 1])
    }

    public var description: String {
        let r = varianceRatios
        func f(_ x: Double) -> String { String(format: "%.3g", x) }
        return "\(layer): \(newMean.count) channels over \(count) values each; mean moved by up to \(f(Double(largestMeanShift)))"
            + " (mean |Δ| \(f(zip(newMean, oldMean).map { Double(abs($0 - $1)) }.reduce(0, +) / Double(max(newMean.count, 1)))));"
            + " variance new/old min \(f(r.min)), median \(f(r.median)), max \(f(r.max))"
    }
}

/// Re-estimates the moving mean and variance of every BatchNormalization layer from
/// data ("precise BN"; AdaBN for a shifted domain): for each layer, the per-channel mean
/// and population variance of its input over all the samples, accumulated in Double,
/// streaming a batch at a time (memory does not grow with the number of samples).
///
/// Layers are recalibrated in inference order: a layer's input is computed with every
/// BatchNormalization before it already using its new statistics, so the result is what
/// inference will see. Layers that do not read one another's outputs are measured in the
/// same pass over the data, so there are as many passes as the longest chain of
/// BatchNormalization layers (`passes(of:)`). Gamma, beta, epsilon and every other weight
/// are unchanged. A layer called more than once (shared weights) gets the statistics of
/// all its calls' inputs together.
public enum BatchNormRecalibration {
    /// The weight-owning BatchNormalization layers of `graph`, grouped by the pass that
    /// measures them: pass k holds the layers whose BatchNormalization ancestors are all in
    /// passes before k.
    public static func passes(of graph: Graph) throws -> [[String]] {
        let owners = Self.owners(graph)
        guard !owners.isEmpty else { throw RecalibrationError.noBatchNorm }
        var pass: [String: Int] = Dictionary(uniqueKeysWithValues: owners.map { ($0, 0) })
        // Fixed point over the (rare) shared layers; each round can only raise a pass, and a
        // pass above the number of layers means a layer waits on itself.
        for _ in 0...(owners.count + 1) {
            var level: [String: Int] = [:]  // 1 + the latest pass among a node's BN ancestors (0: none)
            var changed = false
            for node in graph.nodes {
                let reads = node.inputs.map { level[$0] ?? 0 }.max() ?? 0
                if case .batchNorm = node.operation {
                    let owner = node.sharesWeightsWith ?? node.name
                    if reads > pass[owner]! { pass[owner] = reads; changed = true }
                    level[node.name] = max(reads, pass[owner]! + 1)
                } else {
                    level[node.name] = reads
                }
            }
            if !changed {
                var result = [[String]](repeating: [], count: (pass.values.max() ?? 0) + 1)
                for owner in owners { result[pass[owner]!].append(owner) }
                return result
            }
            if let runaway = owners.first(where: { pass[$0]! > owners.count }) {
                throw RecalibrationError.sharedLayerFeedsItself(layer: runaway)
            }
        }
        throw RecalibrationError.sharedLayerFeedsItself(layer: owners.first { pass[$0]! > 0 } ?? owners[0])
    }

    /// Recalibrates every BatchNormalization layer of `graph` on `data` (see the type's
    /// documentation). Returns the new graph and what changed, layer by layer in model order.
    public static func recalibrate(_ graph: Graph, data: some CalibrationBatches, threads: Int = 1) throws
        -> (graph: Graph, changes: [BatchNormChange]) {
        var graph = graph
        var changes: [String: BatchNormChange] = [:]
        for (number, owners) in try passes(of: graph).enumerated() {
            let calls = owners.map { owner in
                graph.nodes.filter { if case .batchNorm = $0.operation { ($0.sharesWeightsWith ?? $0.name) == owner } else { false } }
            }
            // Observe every call's input (a node read by several calls is observed once).
            var observed: [String] = []
            for node in calls.joined() where !observed.contains(node.inputs[0]) { observed.append(node.inputs[0]) }
            let measured = try statistics(of: observed, in: graph, data: data, threads: threads)
            for (owner, nodes) in zip(owners, calls) {
                guard case .batchNorm(let bn) = nodes[0].operation else { continue }
                var total = ChannelStatistics(channels: bn.channels)
                for node in nodes { total.merge(measured[observed.firstIndex(of: node.inputs[0])!]) }
                let newMean = total.mean.map { Float($0) }, newVariance = total.variance.map { Float($0) }
                for index in graph.nodes.indices where (graph.nodes[index].sharesWeightsWith ?? graph.nodes[index].name) == owner {
                    graph.nodes[index].operation = try graph.nodes[index].operation
                        .replacingWeight(.movingMean, with: Tensor(newMean))
                        .replacingWeight(.movingVariance, with: Tensor(newVariance))
                }
                changes[owner] = BatchNormChange(layer: owner, count: total.count, oldMean: bn.movingMean.values, newMean: newMean,
                                                 oldVariance: bn.movingVariance.values, newVariance: newVariance, pass: number)
            }
        }
        graph = try Graph(name: graph.name, nodes: graph.nodes, outputs: graph.outputs)
        return (graph, owners(graph).compactMap { changes[$0] })
    }

    /// The per-channel statistics (last axis) of the values of the named nodes over `data`,
    /// with the graph as it is (stored statistics for its BatchNormalization layers).
    public static func statistics(of nodes: [String], in graph: Graph, data: some CalibrationBatches, threads: Int = 1) throws
        -> [ChannelStatistics] {
        let shapes = try graph.inferShapes()
        let channels = try nodes.map { name -> Int in
            guard let shape = shapes[name] else { throw RuntimeError.invalidModel(.unknownOutput(name)) }
            return shape.last ?? 1
        }
        let executor = try Executor(graph: try ancestors(of: nodes, in: graph), observing: nodes)
        let threads = max(threads, 1)
        let accumulators = Accumulators(workers: threads, channels: channels)
        // The executor's output (the last observed node, often a large activation) is not
        // needed: batches go through in chunks of about 4 MiB of it, so memory stays small
        // whatever the batch size (the statistics merge the same either way).
        let chunk = max(threads, (1 << 20) / max(executor.outputSize, 1))
        var output = [Float](repeating: 0, count: chunk * executor.outputSize)
        try data.forEachBatch { batch in
            guard executor.inputSize > 0, batch.count % executor.inputSize == 0 else {
                throw RuntimeError.badInputSize(expected: executor.inputSize, found: batch.count)
            }
            let samples = batch.count / executor.inputSize
            try output.withUnsafeMutableBufferPointer { y in
                for start in stride(from: 0, to: samples, by: chunk) {
                    let part = UnsafeBufferPointer(rebasing: batch[(start * executor.inputSize)..<(min(samples, start + chunk) * executor.inputSize)])
                    try executor.run(part, into: y, threads: threads) { observation, values, worker in
                        accumulators.add(values, observation: observation, worker: worker)
                    }
                }
            }
        }
        let result = accumulators.merged()
        guard let first = result.first, first.count > 0 else { throw RecalibrationError.noSamples }
        return result
    }

    /// The weight owners of the BatchNormalization nodes, in model order.
    static func owners(_ graph: Graph) -> [String] {
        var seen: Set<String> = [], result: [String] = []
        for node in graph.nodes {
            guard case .batchNorm = node.operation else { continue }
            let owner = node.sharesWeightsWith ?? node.name
            if seen.insert(owner).inserted { result.append(owner) }
        }
        return result
    }

    /// The part of `graph` that computes `nodes`: their ancestors (and themselves), in
    /// order, with the last of them as the output.
    static func ancestors(of nodes: [String], in graph: Graph) throws -> Graph {
        var needed = Set(nodes)
        for node in graph.nodes.reversed() where needed.contains(node.name) { needed.formUnion(node.inputs) }
        let kept = graph.nodes.filter { needed.contains($0.name) }
        let last = kept.last { nodes.contains($0.name) }!.name
        return try Graph(name: graph.name, nodes: kept, outputs: [last])
    }
}

/// Per-worker running statistics of each observed node: each worker adds to its own.
private final class Accumulators: Sendable {
    private final class Worker: @unchecked Sendable {
        var statistics: [ChannelStatistics]
        var mean: [Double], m2: [Double]

        init(channels: [Int]) {
            statistics = channels.map { ChannelStatistics(channels: $0) }
            mean = [Double](repeating: 0, count: channels.max() ?? 0)
            m2 = mean
        }
    }

    private let workers: [Worker]
    private let channels: [Int]

    init(workers: Int, channels: [Int]) {
        self.channels = channels
        self.workers = (0..<workers).map { _ in Worker(channels: channels) }
    }

    func add(_ values: UnsafeBufferPointer<Float>, observation: Int, worker: Int) {
        let width = channels[observation]
        let rows = values.count / max(width, 1)
        guard rows > 0 else { return }
        let state = workers[worker]
        state.mean.withUnsafeMutableBufferPointer { mean in
            state.m2.withUnsafeMutableBufferPointer { m2 in
                Kernels.channelMoments(values.baseAddress!, rows: rows, channels: width, mean: mean.baseAddress!, m2: m2.baseAddress!)
                state.statistics[observation].merge(count: rows, mean: mean.baseAddress!, m2: m2.baseAddress!)
            }
        }
    }

    /// Every worker's statistics merged, in worker order (deterministic for a thread count).
    func merged() -> [ChannelStatistics] {
        var total = channels.map { ChannelStatistics(channels: $0) }
        for worker in workers { for (i, stats) in worker.statistics.enumerated() { total[i].merge(stats) } }
        return total
    }
}
