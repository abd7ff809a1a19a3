import ModelIR

/// What happened to one BatchNormalization layer.
public struct FoldEvent: Equatable, Sendable, CustomStringConvertible {
    public enum Outcome: Equatable, Sendable {
        /// Multiplied into the weights of the layer before it.
        case foldedIntoPrevious(layer: String)
        /// Multiplied into the weights of the layer after it.
        case foldedIntoNext(layer: String)
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
            "\(batchNorm): folded into '\(layer)' (the layer before it)"
        case .foldedIntoNext(let layer):
            "\(batchNorm): folded into '\(layer)' (the layer after it)"
        case .keptAsAffine(let reason):
            "\(batchNorm): kept as a per-channel scale and shift: \(reason)"
        }
    }
}

/// The folded graph and what was done to each BatchNormalization layer.
public struct FoldResult: Sendable {
    public let graph: Graph
    public let events: [FoldEvent]
}

/// Folds inference-mode BatchNormalization into neighbouring layers
/// (`docs` of the project: the fold catalogue).
///
/// With `s = gamma / sqrt(var + eps)` and `t = beta - mean * s` per channel,
/// computed in Double and rounded once to Float:
/// - Layer → BN (Dense, Conv1D/Conv2D, DepthwiseConv1D/2D, SeparableConv1D/2D (its
///   pointwise kernel), Conv2DTranspose, with a linear activation, whose output feeds
///   only the BN, or only croppings that feed only the BN, weights not shared): output channel c of the kernel is multiplied
///   by `s[c]`, and `b'[c] = b[c]·s[c] + t[c]`.
/// - BN → Dense, BN → Conv or DepthwiseConv that pads nothing (the BN feeds only that
///   layer): input channel i of the kernel is multiplied by `s[i]`, and
///   `b'[o] = b[o] + Σ W[…, i, o]·t[i]`. A padded conv would see a zero border
///   that the shift never reached, so it is not folded into.
/// - Anything else: a per-channel `Affine` (still cheaper than BN), with the reason.
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
            let (scale, shift) = try bn.affineCoefficients()
            switch previousTarget(of: node, in: current) {
            case .success(let producerName):
                let producerIndex = nodes.firstIndex { $0.name == producerName }!
                nodes[producerIndex].operation = try scaleOutputs(nodes[producerIndex].operation, scale: scale, shift: shift)
                rewire(&nodes, &outputs, from: node.name, to: node.inputs[0])
                nodes.remove(at: index)
                events.append(FoldEvent(batchNorm: node.name, outcome: .foldedIntoPrevious(layer: producerName)))
            case .failure(let before):
                let shapes = try current.inferShapes()
                switch nextTarget(of: node, in: current, shapes: shapes) {
                case .success(let consumerName):
                    let consumerIndex = nodes.firstIndex { $0.name == consumerName }!
                    nodes[consumerIndex].operation = try scaleInputs(nodes[consumerIndex].operation, scale: scale, shift: shift)
                    rewire(&nodes, &outputs, from: node.name, to: node.inputs[0])
                    nodes.remove(at: index)
                    events.append(FoldEvent(batchNorm: node.name, outcome: .foldedIntoNext(layer: consumerName)))
                case .failure(let after):
                    nodes[index].operation = .affine(try Affine(scale: Tensor(scale.map { Float($0) }),
                                                                shift: Tensor(shift.map { Float($0) })))
                    events.append(FoldEvent(batchNorm: node.name, outcome: .keptAsAffine(reason: "\(before.text); \(after.text)")))
                    index += 1
                }
            }
        }
        return FoldResult(graph: try Graph(name: graph.name, nodes: nodes, outputs: outputs), events: events)
    }

    struct Refusal: Error {
        let text: String
    }

    private static func rewire(_ nodes: inout [Node], _ outputs: inout [String], from old: String, to new: String) {
        for i in nodes.indices {
            nodes[i].inputs = nodes[i].inputs.map { $0 == old ? new : $0 }
        }
        outputs = outputs.map { $0 == old ? new : $0 }
    }

    private static func isShared(_ node: Node, in graph: Graph) -> Bool {
        node.sharesWeightsWith != nil || graph.nodes.contains { $0.sharesWeightsWith == node.name }
    }

    /// The layer before the BN that it can be folded into, or why there is none.
    static func previousTarget(of bn: Node, in graph: Graph) -> Result<String, Refusal> {
        guard bn.inputs.count == 1, var producer = graph.node(named: bn.inputs[0]) else {
            return .failure(Refusal(text: "it does not read exactly one layer"))
        }
        // Through croppings (PyTorch's ConvTranspose2d with padding, imported as Keras's valid
        // transposed conv and a crop): a crop keeps channels as they are, so the BN commutes with it.
        var reader = bn.name
        while case .cropping2d = producer.operation, producer.inputs.count == 1, graph.consumers(of: producer.name) == [reader],
              !graph.outputs.contains(producer.name), let before = graph.node(named: producer.inputs[0]) {
            reader = producer.name
            producer = before
        }
        switch producer.operation {
        case .dense, .conv2d, .depthwiseConv2d, .separableConv2d, .conv2dTranspose: break
        default:
            return .failure(Refusal(text: "the layer before it, '\(producer.name)' (\(producer.operation.kind)), has no weights to fold into"))
        }
        if let activation = producer.operation.fusedActivation, !activation.isLinear {
            return .failure(Refusal(text: "'\(producer.name)' applies \(activation.name) before it (folding across a nonlinearity is not exact)"))
        }
        if graph.consumers(of: producer.name) != [reader] || graph.outputs.contains(producer.name) {
            return .failure(Refusal(text: "the output of '\(producer.name)' is also used elsewhere"))
        }
        if isShared(producer, in: graph) {
            return .failure(Refusal(text: "the weights of '\(producer.name)' are shared with another call of the layer"))
        }
        return .success(producer.name)
    }

    /// The layer after the BN that it can be folded into, or why there is none.
    static func nextTarget(of bn: Node, in graph: Graph, shapes: [String: [Int]]) -> Result<String, Refusal> {
        let consumers = graph.consumers(of: bn.name)
        guard consumers.count == 1, !graph.outputs.contains(bn.name), let consumer = graph.node(named: consumers[0]) else {
            return .failure(Refusal(text: consumers.isEmpty || graph.outputs.contains(bn.name)
                ? "its output is a model output" : "its output feeds \(consumers.count) layers"))
        }
        guard consumer.inputs == [bn.name] else {
            return .failure(Refusal(text: "the layer after it, '\(consumer.name)', also reads other inputs"))
        }
        /// Whether a window reads beyond the input (zero padding the shift would not reach).
        func pads(_ window: Window) -> Bool {
            let raw = shapes[bn.name]!
            let shape = raw.count == 2 ? [1] + raw : raw
            return (0..<2).contains { axis in
                let (length, before) = window.output(axis: axis, input: shape[axis])
                let effective = (window.size[axis] - 1) * window.dilation[axis] + 1
                return before > 0 || (length - 1) * window.strides[axis] + effective > shape[axis]
            }
        }
        switch consumer.operation {
        case .dense:
            break
        case .conv2d(let conv):
            if pads(conv.window) {
                return .failure(Refusal(text: "the conv after it, '\(consumer.name)', pads its input, and the padding would not be shifted (not exact)"))
            }
        case .depthwiseConv2d(let conv):
            if pads(conv.window) {
                return .failure(Refusal(text: "the depthwise conv after it, '\(consumer.name)', pads its input, and the padding would not be shifted (not exact)"))
            }
        default:
            return .failure(Refusal(text: "the layer after it, '\(consumer.name)' (\(consumer.operation.kind)), cannot absorb it"))
        }
        if isShared(consumer, in: graph) {
            return .failure(Refusal(text: "the weights of '\(consumer.name)' are shared with another call of the layer"))
        }
        return .success(consumer.name)
    }

    /// Layer → BN: output channel c scaled by s[c]; bias b·s + t.
    /// In the Keras layouts of Dense, Conv (1-D and 2-D), Depthwise (c·dm + m) and the pointwise
    /// kernel of a separable conv the output channel is the fastest-varying index of the flattened
    /// kernel, so channel = flat index % channels. Conv2DTranspose's kernel is (kh, kw, out, in):
    /// channel = (flat index / in) % out.
    static func scaleOutputs(_ op: Op, scale: [Double], shift: [Double]) throws -> Op {
        func fold(_ kernel: Tensor, _ bias: Tensor?) throws -> (Tensor, Tensor) {
            let channels = scale.count
            let values = kernel.values.enumerated().map { Float(Double($1) * scale[$0 % channels]) }
            let biasValues = bias?.values
            let b = (0..<channels).map { Float(Double(biasValues?[$0] ?? 0) * scale[$0] + shift[$0]) }
            return (try Tensor(shape: kernel.shape, values: values), Tensor(b))
        }
        switch op {
        case .dense(var d):
            (d.kernel, d.bias) = try fold(d.kernel, d.bias)
            return .dense(d)
        case .conv2d(var c):
            (c.kernel, c.bias) = try fold(c.kernel, c.bias)
            return .conv2d(c)
        case .depthwiseConv2d(var c):
            (c.kernel, c.bias) = try fold(c.kernel, c.bias)
            return .depthwiseConv2d(c)
        case .separableConv2d(var c):
            (c.pointwiseKernel, c.bias) = try fold(c.pointwiseKernel, c.bias)
            return .separableConv2d(c)
        case .conv2dTranspose(var c):
            let out = c.outputChannels, inputs = c.inputChannels
            let values = c.kernel.values.enumerated().map { Float(Double($1) * scale[($0 / inputs) % out]) }
            let biasValues = c.bias?.values
            c.kernel = try Tensor(shape: c.kernel.shape, values: values)
            c.bias = Tensor((0..<out).map { Float(Double(biasValues?[$0] ?? 0) * scale[$0] + shift[$0]) })
            return .conv2dTranspose(c)
        default:
            throw Refusal(text: "cannot fold into \(op.kind)")
        }
    }

    /// BN → layer: input channel i scaled by s[i]; bias gains Σ W[…, i, o]·t[i].
    static func scaleInputs(_ op: Op, scale: [Double], shift: [Double]) throws -> Op {
        switch op {
        case .dense(var d):
            let units = d.units
            var kernel = d.kernel.values
            let biasValues = d.bias?.values
            var bias = (0..<units).map { Double(biasValues?[$0] ?? 0) }
            for i in 0..<d.inputs {
                for o in 0..<units {
                    let w = Double(kernel[i * units + o])
                    bias[o] += w * shift[i]
                    kernel[i * units + o] = Float(w * scale[i])
                }
            }
            d.kernel = try Tensor(shape: d.kernel.shape, values: kernel)
            d.bias = Tensor(bias.map { Float($0) })
            return .dense(d)
        case .conv2d(var c):
            let out = c.outputChannels, perGroup = c.kernel.shape[c.kernel.shape.count - 2], outPerGroup = out / c.groups
            (c.kernel, c.bias) = try foldInputs(c.kernel, c.bias, outputs: out, scale: scale, shift: shift) { flat in
                ((flat % out) / outPerGroup) * perGroup + (flat / out) % perGroup
            }
            return .conv2d(c)
        case .depthwiseConv2d(var c):
            // Kernel (…, in, dm): input channel = (flat / dm) % in.
            let multiplier = c.depthMultiplier, channels = c.inputChannels
            (c.kernel, c.bias) = try foldInputs(c.kernel, c.bias, outputs: c.outputChannels, scale: scale, shift: shift) { flat in
                (flat / multiplier) % channels
            }
            return .depthwiseConv2d(c)
        default:
            throw Refusal(text: "cannot fold into \(op.kind)")
        }
    }

    /// Scales each kernel weight by s of its input channel and adds w·t of it to the bias of its
    /// output channel (flat index % outputs, the output channel being fastest in every Keras layout).
    private static func foldInputs(_ kernel: Tensor, _ bias: Tensor?, outputs: Int, scale: [Double], shift: [Double],
                                   inputChannel: (Int) -> Int) throws -> (Tensor, Tensor) {
        var values = kernel.values
        let biasValues = bias?.values
        var folded = (0..<outputs).map { Double(biasValues?[$0] ?? 0) }
        for flat in 0..<values.count {
            let channel = inputChannel(flat), w = Double(values[flat])
            folded[flat % outputs] += w * shift[channel]
            values[flat] = Float(w * scale[channel])
        }
        return (try Tensor(shape: kernel.shape, values: values), Tensor(folded.map { Float($0) }))
    }
}
