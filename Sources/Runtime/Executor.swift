import ModelIR

/// Why a model cannot run.
public enum RuntimeError: Error, CustomStringConvertible, Equatable, Sendable {
    case invalidModel(ModelError)
    case unsupported(node: String, detail: String)
    case badInputSize(expected: Int, found: Int)
    case badBatchSize(Int)

    public var description: String {
        switch self {
        case let .invalidModel(error): "invalid model: \(error)"
        case let .unsupported(node, detail): "layer '\(node)' cannot run: \(detail)"
        case let .badInputSize(expected, found): "input holds \(found) values, expected a multiple of \(expected) (one sample)"
        case let .badBatchSize(batch): "invalid batch size \(batch)"
        }
    }
}

/// Runs a `Graph` on the CPU, a batch at a time.
///
/// The plan (what each step reads and writes) is made once at init; the
/// weights are converted once (BatchNorm becomes its affine map, computed in
/// Double and rounded once to Float).
public final class Executor: @unchecked Sendable {
    /// Sample shape of the input and output (batch axis excluded).
    public let inputShape: [Int]
    public let outputShape: [Int]
    /// Values per sample.
    public let inputSize: Int
    public let outputSize: Int

    private let steps: [Step]
    private let nodeCount: Int
    private let sizes: [Int]
    private let outputIndex: Int

    private enum Kind {
        case dense(kernel: [Float], bias: [Float]?, inputs: Int, units: Int, activation: ActivationKind)
        case affine(scale: [Float], shift: [Float], channels: Int)
        case activation(ActivationKind, channels: Int)
        case copy
    }

    private struct Step {
        let kind: Kind
        let source: Int
        let destination: Int
    }

    public init(graph: Graph) throws {
        let shapes: [String: [Int]]
        do { shapes = try graph.inferShapes() } catch let error as ModelError { throw RuntimeError.invalidModel(error) }
        let input: Node
        do { input = try graph.inputNode() } catch let error as ModelError { throw RuntimeError.invalidModel(error) }
        guard graph.outputs.count == 1 else {
            throw RuntimeError.unsupported(node: graph.outputs.joined(separator: ", "), detail: "the model has \(graph.outputs.count) outputs; one is supported")
        }
        var index: [String: Int] = [:]
        for (i, node) in graph.nodes.enumerated() { index[node.name] = i }
        var steps: [Step] = []
        for (i, node) in graph.nodes.enumerated() {
            let channels = shapes[node.name]!.last ?? 1
            func source() throws -> Int {
                guard node.inputs.count == 1 else {
                    throw RuntimeError.unsupported(node: node.name, detail: "\(node.inputs.count) inputs")
                }
                return index[node.inputs[0]]!
            }
            let kind: Kind
            switch node.operation {
            case .input:
                continue
            case .dense(let dense):
                kind = .dense(kernel: dense.kernel.values, bias: dense.bias?.values,
                              inputs: dense.inputs, units: dense.units, activation: Self.kind(dense.activation))
            case .batchNorm(let bn):
                let coefficients: (scale: [Double], shift: [Double])
                do { coefficients = try bn.affineCoefficients() } catch let error as ModelError {
                    throw RuntimeError.unsupported(node: node.name, detail: "\(error)")
                }
                kind = .affine(scale: coefficients.scale.map { Float($0) }, shift: coefficients.shift.map { Float($0) }, channels: bn.channels)
            case .affine(let affine):
                kind = .affine(scale: affine.scale.values, shift: affine.shift.values, channels: affine.channels)
            case .activation(let activation):
                kind = .activation(Self.kind(activation), channels: channels)
            case .flatten, .reshape, .identity:
                kind = .copy
            }
            steps.append(Step(kind: kind, source: try source(), destination: i))
        }
        self.steps = steps
        self.nodeCount = graph.nodes.count
        self.sizes = graph.nodes.map { shapes[$0.name]!.reduce(1, *) }
        self.inputShape = shapes[input.name]!
        self.outputShape = shapes[graph.outputs[0]]!
        self.inputSize = inputShape.reduce(1, *)
        self.outputSize = outputShape.reduce(1, *)
        self.outputIndex = index[graph.outputs[0]]!
        self.inputIndex = index[input.name]!
    }

    private let inputIndex: Int

    private static func kind(_ activation: Activation) -> ActivationKind {
        switch activation {
        case .linear: .linear
        case .relu: .relu
        case .sigmoid: .sigmoid
        case .tanh: .tanh
        case .softmax: .softmax
        }
    }

    /// Runs the model on `input.count / inputSize` samples laid out one after
    /// another and returns their outputs, `outputSize` values each.
    public func run(_ input: [Float]) throws -> [Float] {
        guard inputSize > 0, input.count % inputSize == 0 else {
            throw RuntimeError.badInputSize(expected: inputSize, found: input.count)
        }
        let batch = input.count / inputSize
        if batch == 0 { return [] }
        var buffers = [[Float]](repeating: [], count: nodeCount)
        buffers[inputIndex] = input
        for step in steps {
            var output = [Float](repeating: 0, count: batch * sizes[step.destination])
            let source = buffers[step.source]
            output.withUnsafeMutableBufferPointer { out in
                source.withUnsafeBufferPointer { x in
                    Self.execute(step.kind, x.baseAddress!, out.baseAddress!, rows: batch, count: out.count)
                }
            }
            buffers[step.destination] = output
        }
        return buffers[outputIndex]
    }

    private static func execute(_ kind: Kind, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, count: Int) {
        switch kind {
        case let .dense(kernel, bias, inputs, units, activation):
            kernel.withUnsafeBufferPointer { w in
                if let bias {
                    bias.withUnsafeBufferPointer { b in
                        Kernels.dense(input: x, rows: rows, inputs: inputs, kernel: w.baseAddress!, bias: b.baseAddress!, units: units, output: y)
                    }
                } else {
                    Kernels.dense(input: x, rows: rows, inputs: inputs, kernel: w.baseAddress!, bias: nil, units: units, output: y)
                }
            }
            Kernels.activate(y, count: count, channels: units, kind: activation)
        case let .affine(scale, shift, channels):
            y.update(from: x, count: count)
            scale.withUnsafeBufferPointer { s in
                shift.withUnsafeBufferPointer { t in
                    Kernels.affine(y, count: count, channels: channels, scale: s.baseAddress!, shift: t.baseAddress!)
                }
            }
        case let .activation(activation, channels):
            y.update(from: x, count: count)
            Kernels.activate(y, count: count, channels: channels, kind: activation)
        case .copy:
            y.update(from: x, count: count)
        }
    }
}

extension Executor {
    /// The index of the largest value of each sample's output (first on ties).
    public func classes(of outputs: [Float]) -> [Int] {
        stride(from: 0, to: outputs.count, by: max(outputSize, 1)).map { start in
            var best = start
            for i in start..<(start + outputSize) where outputs[i] > outputs[best] { best = i }
            return best - start
        }
    }
}
