/// Ways a model can be inconsistent, independent of any file format.
public enum ModelError: Error, Equatable, Sendable, CustomStringConvertible {
    case tensorSizeMismatch(shape: [Int], count: Int)
    case badWeightShape(role: WeightRole, expected: String, found: [Int])
    case badAttribute(name: String, value: String)
    case duplicateNode(String)
    case unknownInput(node: String, input: String)
    case wrongInputCount(node: String, expected: Int, found: Int)
    case noInput
    case multipleInputs([String])
    case unknownOutput(String)
    case shapeMismatch(node: String, detail: String)

    public var description: String {
        switch self {
        case let .tensorSizeMismatch(shape, count):
            "a tensor of shape \(shape) cannot hold \(count) values"
        case let .badWeightShape(role, expected, found):
            "weight '\(role.rawValue)' has shape \(found), expected \(expected)"
        case let .badAttribute(name, value):
            "attribute '\(name)' has an invalid value \(value)"
        case let .duplicateNode(name):
            "two layers are named '\(name)'"
        case let .unknownInput(node, input):
            "layer '\(node)' reads '\(input)', which comes later or does not exist"
        case let .wrongInputCount(node, expected, found):
            "layer '\(node)' takes \(expected) input(s), found \(found)"
        case .noInput:
            "the model has no input layer"
        case let .multipleInputs(names):
            "the model has several inputs (\(names.joined(separator: ", "))); only single-input models can run"
        case let .unknownOutput(name):
            "the model output '\(name)' is not a layer of the model"
        case let .shapeMismatch(node, detail):
            "layer '\(node)': \(detail)"
        }
    }
}

/// A model: nodes in topological order (every input precedes its reader)
/// and the names of the output nodes.
public struct Graph: Equatable, Sendable {
    public var name: String
    public var nodes: [Node]
    public var outputs: [String]

    /// Creates a graph and checks that it is well formed and that every
    /// weight fits the shape that reaches it.
    public init(name: String, nodes: [Node], outputs: [String]) throws {
        self.name = name
        self.nodes = nodes
        self.outputs = outputs
        _ = try inferShapes()
    }

    /// A chain: each node reads the one before it.
    public static func sequential(name: String, inputShape: [Int], layers: [(name: String, operation: Op)],
                                  inputName: String = "input") throws -> Graph {
        var nodes = [Node(name: inputName, operation: .input(shape: inputShape), inputs: [])]
        for layer in layers {
            nodes.append(Node(name: layer.name, operation: layer.operation, inputs: [nodes.last!.name]))
        }
        return try Graph(name: name, nodes: nodes, outputs: [nodes.last!.name])
    }

    /// The node with this name.
    public func node(named name: String) -> Node? {
        nodes.first { $0.name == name }
    }

    /// The names of the nodes that read `name`'s output (a node reading it
    /// twice is listed twice).
    public func consumers(of name: String) -> [String] {
        nodes.flatMap { node in node.inputs.filter { $0 == name }.map { _ in node.name } }
    }

    /// The single input node; several inputs are refused.
    public func inputNode() throws -> Node {
        let inputs = nodes.filter { if case .input = $0.operation { true } else { false } }
        guard let first = inputs.first else { throw ModelError.noInput }
        guard inputs.count == 1 else { throw ModelError.multipleInputs(inputs.map(\.name)) }
        return first
    }

    /// The shape (without the batch axis) of every node's output, by name.
    public func inferShapes() throws -> [String: [Int]] {
        var shapes: [String: [Int]] = [:]
        for node in nodes {
            guard shapes[node.name] == nil else { throw ModelError.duplicateNode(node.name) }
            let inputShapes = try node.inputs.map { input -> [Int] in
                guard let shape = shapes[input] else { throw ModelError.unknownInput(node: node.name, input: input) }
                return shape
            }
            shapes[node.name] = try Graph.outputShape(of: node, inputShapes: inputShapes)
        }
        for output in outputs where shapes[output] == nil {
            throw ModelError.unknownOutput(output)
        }
        return shapes
    }

    /// The shape element-wise inputs broadcast to (NumPy's and Keras 3's rule on inputs of
    /// one rank: each size equal, or 1 and stretched; e.g. (48, 48, 32) with (1, 1, 32), the
    /// squeeze-and-excitation product). Inputs of different ranks are refused.
    public static func broadcastShape(_ shapes: [[Int]], node: String) throws -> [Int] {
        let rank = shapes[0].count
        guard shapes.allSatisfy({ $0.count == rank }) else {
            throw ModelError.shapeMismatch(node: node, detail: "inputs of different ranks \(shapes) (element-wise layers broadcast inputs of one rank)")
        }
        var result = [Int](repeating: 1, count: rank)
        for d in 0..<rank {
            for shape in shapes where shape[d] != 1 {
                guard result[d] == 1 || result[d] == shape[d] else {
                    throw ModelError.shapeMismatch(node: node, detail: "inputs of shapes \(shapes) do not broadcast (each size must be equal, or 1)")
                }
                result[d] = shape[d]
            }
        }
        return result
    }

    /// The output shape of `node` given its inputs' shapes (batch axis excluded).
    public static func outputShape(of node: Node, inputShapes: [[Int]]) throws -> [Int] {
        func fail(_ detail: String) -> ModelError { .shapeMismatch(node: node.name, detail: detail) }
        func single() throws -> [Int] {
            guard inputShapes.count == 1 else {
                throw ModelError.wrongInputCount(node: node.name, expected: 1, found: inputShapes.count)
            }
            return inputShapes[0]
        }
        func lastAxis(_ shape: [Int], channels: Int, what: String) throws {
            guard let last = shape.last, last == channels else {
                throw fail("\(what) has \(channels) channels but its input has shape \(shape)")
            }
        }
        func image(_ what: String) throws -> [Int] {
            let shape = try single()
            guard shape.count == 3 else { throw fail("\(what) needs a (height, width, channels) input, found shape \(shape)") }
            return shape
        }
        /// A (height, width, channels) or (steps, channels) input as (height, width, channels)
        /// (steps as a height-1 image); `oneDimensional` demands one form.
        func spatial(_ what: String, oneDimensional: Bool? = nil) throws -> (shape: [Int], oneDimensional: Bool) {
            let shape = try single()
            switch (shape.count, oneDimensional) {
            case (3, nil), (3, false): return (shape, false)
            case (2, nil), (2, true): return ([1] + shape, true)
            default:
                throw fail("\(what) needs a \(oneDimensional == true ? "(steps, channels)" : oneDimensional == false ? "(height, width, channels)" : "(height, width, channels) or (steps, channels)") input, found shape \(shape)")
            }
        }
        func windowed(_ input: (shape: [Int], oneDimensional: Bool), _ window: Window, channels: Int) throws -> [Int] {
            let shape = input.shape
            let h = window.output(axis: 0, input: shape[0]).length, w = window.output(axis: 1, input: shape[1])
            guard h > 0, w.length > 0 else { throw fail("the window \(window.size) does not fit the input \(shape)") }
            if input.oneDimensional {
                guard h == 1 else { throw fail("a 1-D input needs a window of height 1, found \(window.size)") }
                return [w.length, channels]
            }
            return [h, w.length, channels]
        }
        func merged(_ input: (shape: [Int], oneDimensional: Bool), _ h: Int, _ w: Int, _ c: Int) -> [Int] {
            input.oneDimensional ? [w, c] : [h, w, c]
        }
        switch node.operation {
        case .input(let shape):
            guard inputShapes.isEmpty else {
                throw ModelError.wrongInputCount(node: node.name, expected: 0, found: inputShapes.count)
            }
            guard !shape.isEmpty, Tensor.elementCount(shape).map({ $0 > 0 }) == true else {
                throw fail("input shape \(shape) is not a fixed positive shape")
            }
            return shape
        case .dense(let dense):
            let shape = try single()
            try lastAxis(shape, channels: dense.inputs, what: "the kernel")
            return Array(shape.dropLast()) + [dense.units]
        case .conv2d(let conv):
            let input = try spatial(conv.isOneDimensional ? "Conv1D" : "Conv2D", oneDimensional: conv.isOneDimensional)
            try lastAxis(input.shape, channels: conv.inputChannels, what: "the kernel")
            return try windowed(input, conv.window, channels: conv.outputChannels)
        case .depthwiseConv2d(let conv):
            let input = try spatial(conv.isOneDimensional ? "DepthwiseConv1D" : "DepthwiseConv2D", oneDimensional: conv.isOneDimensional)
            try lastAxis(input.shape, channels: conv.inputChannels, what: "the kernel")
            return try windowed(input, conv.window, channels: conv.outputChannels)
        case .separableConv2d(let conv):
            let input = try spatial(conv.isOneDimensional ? "SeparableConv1D" : "SeparableConv2D", oneDimensional: conv.isOneDimensional)
            try lastAxis(input.shape, channels: conv.inputChannels, what: "the depthwise kernel")
            return try windowed(input, conv.window, channels: conv.outputChannels)
        case .conv2dTranspose(let conv):
            let shape = try image("Conv2DTranspose")
            try lastAxis(shape, channels: conv.inputChannels, what: "the kernel")
            return [conv.output(axis: 0, input: shape[0]).length, conv.output(axis: 1, input: shape[1]).length, conv.outputChannels]
        case .pool2d(let pool):
            let input = try spatial("pooling")
            return try windowed(input, pool.window, channels: input.shape[2])
        case .globalPool(_, let keepDims):
            let input = try spatial("global pooling")
            let c = input.shape[2]
            return keepDims ? (input.oneDimensional ? [1, c] : [1, 1, c]) : [c]
        case .zeroPadding2d(let pads):
            let input = try spatial("zero padding")
            let shape = input.shape
            guard pads.count == 4, pads.allSatisfy({ $0 >= 0 }), !input.oneDimensional || pads[0] + pads[1] == 0 else {
                throw fail("invalid padding \(pads)")
            }
            return merged(input, shape[0] + pads[0] + pads[1], shape[1] + pads[2] + pads[3], shape[2])
        case .transpose(let perm):
            let shape = try single()
            guard perm.count == shape.count, perm.sorted() == Array(0..<shape.count) else {
                throw fail("transpose \(perm) is not a permutation of the axes of \(shape)")
            }
            return perm.map { shape[$0] }
        case .pad2d(let pads, _):
            let input = try spatial("padding")
            let shape = input.shape
            guard pads.count == 4, pads.allSatisfy({ $0 >= 0 }), !input.oneDimensional || pads[0] + pads[1] == 0 else {
                throw fail("invalid padding \(pads)")
            }
            return merged(input, shape[0] + pads[0] + pads[1], shape[1] + pads[2] + pads[3], shape[2])
        case .cropping2d(let crops):
            let input = try spatial("cropping")
            let shape = input.shape
            guard crops.count == 4, crops.allSatisfy({ $0 >= 0 }), crops[0] + crops[1] < shape[0], crops[2] + crops[3] < shape[1] else {
                throw fail("cropping \(crops) does not fit the input \(shape)")
            }
            return merged(input, shape[0] - crops[0] - crops[1], shape[1] - crops[2] - crops[3], shape[2])
        case .upsampling(let up):
            let input = try spatial("upsampling")
            let shape = input.shape
            guard !input.oneDimensional || up.factors[0] == 1 else { throw fail("a 1-D input is upsampled along its steps only") }
            return merged(input, shape[0] * up.factors[0], shape[1] * up.factors[1], shape[2])
        case .layerNorm(let ln):
            let shape = try single()
            guard let last = ln.axes.last, last < shape.count else { throw fail("normalizing axes \(ln.axes) of an input of shape \(shape)") }
            let expected = ln.parameterShape(for: shape)
            for tensor in [ln.gamma, ln.beta].compactMap({ $0 }) where tensor.shape != expected && tensor.shape != [expected.reduce(1, *)] {
                throw fail("layer normalization over axes \(ln.axes) needs parameters of shape \(expected), found \(tensor.shape)")
            }
            return shape
        case .batchNorm(let bn):
            let shape = try single()
            try lastAxis(shape, channels: bn.channels, what: "batch normalization")
            return shape
        case .affine(let affine):
            let shape = try single()
            try lastAxis(shape, channels: affine.channels, what: "the scale and shift")
            return shape
        case .activation, .identity:
            return try single()
        case .merge(.subtract):
            guard inputShapes.count == 2 else { throw ModelError.wrongInputCount(node: node.name, expected: 2, found: inputShapes.count) }
            return try Graph.broadcastShape(inputShapes, node: node.name)
        case .add, .multiply, .merge:
            guard inputShapes.count >= 2 else { throw ModelError.wrongInputCount(node: node.name, expected: 2, found: inputShapes.count) }
            return try Graph.broadcastShape(inputShapes, node: node.name)
        case .concatenate(let axis):
            guard inputShapes.count >= 2 else { throw ModelError.wrongInputCount(node: node.name, expected: 2, found: inputShapes.count) }
            let rank = inputShapes[0].count
            guard axis >= 0, axis < rank, inputShapes.allSatisfy({ $0.count == rank }) else {
                throw fail("cannot join shapes \(inputShapes) along axis \(axis)")
            }
            for shape in inputShapes {
                for k in 0..<rank where k != axis && shape[k] != inputShapes[0][k] {
                    throw fail("cannot join shapes \(inputShapes) along axis \(axis)")
                }
            }
            var shape = inputShapes[0]
            shape[axis] = inputShapes.reduce(0) { $0 + $1[axis] }
            return shape
        case .slice(let axis, let start, let end):
            var shape = try single()
            guard axis >= 0, axis < shape.count, start >= 0, start < end, end <= shape[axis] else {
                throw fail("a slice \(start)..<\(end) of axis \(axis) does not fit the input \(shape)")
            }
            shape[axis] = end - start
            return shape
        case .flatten:
            let shape = try single()
            return [shape.reduce(1, *)]
        case .reshape(let target):
            let shape = try single()
            let count = shape.reduce(1, *)
            let unknown = target.filter { $0 == -1 }.count
            let known = target.filter { $0 != -1 }
            guard unknown <= 1, known.allSatisfy({ $0 > 0 }), let product = Tensor.elementCount(known), product > 0 else {
                throw fail("invalid reshape target \(target)")
            }
            if unknown == 1 {
                guard count % product == 0 else { throw fail("cannot reshape \(shape) to \(target)") }
                return target.map { $0 == -1 ? count / product : $0 }
            }
            guard product == count else { throw fail("cannot reshape \(shape) to \(target)") }
            return target
        }
    }
}
