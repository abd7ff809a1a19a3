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

    /// The output shape of `node` given its inputs' shapes (batch axis excluded).
    public static func outputShape(of node: Node, inputShapes: [[Int]]) throws -> [Int] {
        func single() throws -> [Int] {
            guard inputShapes.count == 1 else {
                throw ModelError.wrongInputCount(node: node.name, expected: 1, found: inputShapes.count)
            }
            return inputShapes[0]
        }
        func lastAxis(_ shape: [Int], channels: Int, what: String) throws {
            guard let last = shape.last, last == channels else {
                throw ModelError.shapeMismatch(node: node.name, detail: "\(what) has \(channels) channels but its input has shape \(shape)")
            }
        }
        switch node.operation {
        case .input(let shape):
            guard inputShapes.isEmpty else {
                throw ModelError.wrongInputCount(node: node.name, expected: 0, found: inputShapes.count)
            }
            guard !shape.isEmpty, Tensor.elementCount(shape).map({ $0 > 0 }) == true else {
                throw ModelError.shapeMismatch(node: node.name, detail: "input shape \(shape) is not a fixed positive shape")
            }
            return shape
        case .dense(let dense):
            let shape = try single()
            try lastAxis(shape, channels: dense.inputs, what: "the kernel")
            return Array(shape.dropLast()) + [dense.units]
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
        case .flatten:
            let shape = try single()
            return [shape.reduce(1, *)]
        case .reshape(let target):
            let shape = try single()
            let count = shape.reduce(1, *)
            let unknown = target.filter { $0 == -1 }.count
            let known = target.filter { $0 != -1 }
            guard unknown <= 1, known.allSatisfy({ $0 > 0 }), let product = Tensor.elementCount(known), product > 0 else {
                throw ModelError.shapeMismatch(node: node.name, detail: "invalid reshape target \(target)")
            }
            if unknown == 1 {
                guard count % product == 0 else {
                    throw ModelError.shapeMismatch(node: node.name, detail: "cannot reshape \(shape) to \(target)")
                }
                return target.map { $0 == -1 ? count / product : $0 }
            }
            guard product == count else {
                throw ModelError.shapeMismatch(node: node.name, detail: "cannot reshape \(shape) to \(target)")
            }
            return target
        }
    }
}
