import ModelIR

/// What happened to one BatchNormalization layer.
public struct FoldEvent: Equatable, Sendable, CustomStringConvertible {
    public enum Outcome: Equatable, Sendable {
        /// Multiplied into the weights of the layer before it.
        case foldedIntoPrevious(layer: String)
        /// Kept as a per-channel scale and shift, for the reason given.
        case keptAsAffine(reason: String)
    }

    /// The BatchNormalization layer's name.
    public let batchNorm: String
    public let outcome: Outcome

    public init(batchNorm: String, outcome: Outcome) {
        self.batchNorm = batchNorm
        self.outcome = outcome
    }

    public var description: String {
        switch outcome {
        case .foldedIntoPrevious(let layer):
            "\(batchNorm): folded into '\(layer)'"
        case .keptAsAffine(let reason):
            "\(batchNorm): kept as a per-channel scale and shift (\(reason))"
        }
    }
}

/// The folded graph and what was done to each BatchNormalization layer.
public struct FoldResult: Sendable {
    public let graph: Graph
    public let events: [FoldEvent]
}

/// Folds inference-mode BatchNormalization into neighbouring layers.
///
/// Layer → BN (BN reads a Dense with a linear activation whose output feeds
/// nothing else): per output channel c, with `s = gamma / sqrt(var + eps)`,
/// `W'[i, c] = W[i, c] * s[c]` and `b'[c] = (b[c] - mean[c]) * s[c] + beta[c]`.
/// Every coefficient is computed in Double and rounded once to Float.
/// A BN with nothing to fold into becomes a per-channel `Affine`.
public enum BNFolder {
    public static func fold(_ graph: Graph) throws -> FoldResult {
        var nodes = graph.nodes
        var outputs = graph.outputs
        var events: [FoldEvent] = []
        var index = 0
        while index < nodes.count {
            let node = nodes[index]
            guard case .batchNorm(let bn) = node.operation else {
                index += 1
                continue
            }
            let current = try Graph(name: graph.name, nodes: nodes, outputs: outputs)
            switch previousFoldTarget(of: node, in: current) {
            case .success(let producerName):
                let producerIndex = nodes.firstIndex { $0.name == producerName }!
                guard case .dense(let dense) = nodes[producerIndex].operation else { fatalError("checked by previousFoldTarget") }
                nodes[producerIndex].operation = .dense(try foldIntoDense(dense, bn))
                // Readers of the BN now read the folded layer.
                for i in nodes.indices {
                    nodes[i].inputs = nodes[i].inputs.map { $0 == node.name ? producerName : $0 }
                }
                outputs = outputs.map { $0 == node.name ? producerName : $0 }
                nodes.remove(at: index)
                events.append(FoldEvent(batchNorm: node.name, outcome: .foldedIntoPrevious(layer: producerName)))
            case .failure(let reason):
                let (scale, shift) = try bn.affineCoefficients()
                nodes[index].operation = .affine(try Affine(scale: Tensor(scale.map { Float($0) }),
                                                            shift: Tensor(shift.map { Float($0) })))
                events.append(FoldEvent(batchNorm: node.name, outcome: .keptAsAffine(reason: reason.text)))
                index += 1
            }
        }
        return FoldResult(graph: try Graph(name: graph.name, nodes: nodes, outputs: outputs), events: events)
    }

    struct Refusal: Error {
        let text: String
    }

    /// The layer before `bn` that it can be folded into, or why there is none.
    static func previousFoldTarget(of bn: Node, in graph: Graph) -> Result<String, Refusal> {
        guard bn.inputs.count == 1, let producer = graph.node(named: bn.inputs[0]) else {
            return .failure(Refusal(text: "it does not read exactly one layer"))
        }
        guard case .dense(let dense) = producer.operation else {
            return .failure(Refusal(text: "it follows '\(producer.name)' (\(producer.operation.kind)), which has no weights to fold into"))
        }
        guard dense.activation == .linear else {
            return .failure(Refusal(text: "'\(producer.name)' applies \(dense.activation.rawValue) before it; folding across a nonlinearity is not exact"))
        }
        let consumers = graph.consumers(of: producer.name)
        guard consumers == [bn.name], !graph.outputs.contains(producer.name) else {
            return .failure(Refusal(text: "the output of '\(producer.name)' is also used elsewhere"))
        }
        return .success(producer.name)
    }

    /// Dense followed by BN as one Dense.
    static func foldIntoDense(_ dense: Dense, _ bn: BatchNorm) throws -> Dense {
        let (scale, shift) = try bn.affineCoefficients()
        let units = dense.units
        var kernel = [Float](repeating: 0, count: dense.kernel.values.count)
        for i in 0..<dense.inputs {
            for o in 0..<units {
                kernel[i * units + o] = Float(Double(dense.kernel.values[i * units + o]) * scale[o])
            }
        }
        // b' = (b - mean) * s + beta = b * s + t, with t = beta - mean * s.
        let bias = (0..<units).map { o in
            Float(Double(dense.bias?.values[o] ?? 0) * scale[o] + shift[o])
        }
        return try Dense(kernel: Tensor(shape: dense.kernel.shape, values: kernel), bias: Tensor(bias), activation: dense.activation)
    }
}
