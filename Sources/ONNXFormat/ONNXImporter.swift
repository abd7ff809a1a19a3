import Foundation
import ModelIR
import ONNXProto

/// A constant: initializers, Constant nodes and folded shape arithmetic. Integers stay
/// integers (shapes); `Importer.batch` marks the batch dimension in a folded shape.
struct ConstantArray {
    var shape: [Int]
    var floats: [Float]?
    var ints: [Int64]?

    var count: Int { floats?.count ?? ints?.count ?? 0 }
    var asFloats: [Float] { floats ?? (ints ?? []).map { Float($0) } }
    /// Float values as integers (a hostile NaN or infinity saturates instead of trapping; the
    /// callers' range checks then refuse it).
    var asInts: [Int64] { ints ?? (floats ?? []).map { $0.isNaN ? 0 : Int64(max(-9.0e18, min(9.0e18, $0))) } }

    /// The values with their axes permuted: output axis j is axis `perm[j]` (a permutation of the axes).
    func transposed(_ perm: [Int]) -> ConstantArray {
        let rank = shape.count
        var strides = [Int](repeating: 1, count: rank)
        for d in stride(from: rank - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * shape[d + 1] }
        let outShape = perm.map { shape[$0] }
        var order = [Int](), coordinate = [Int](repeating: 0, count: rank)
        order.reserveCapacity(count)
        for _ in 0..<count {
            order.append(zip(coordinate, perm).reduce(0) { $0 + $1.0 * strides[$1.1] })
            var d = rank - 1
            while d >= 0 { coordinate[d] += 1; if coordinate[d] < outShape[d] { break }; coordinate[d] = 0; d -= 1 }
        }
        if let ints { return ConstantArray(shape: outShape, ints: order.map { ints[$0] }) }
        let floats = asFloats
        return ConstantArray(shape: outShape, floats: order.map { floats[$0] })
    }
}

/// An ONNX value while importing: a constant, or a runtime tensor held by an IR node, whose
/// per-sample ONNX shape (batch excluded) is `shape`. In the IR a rank-1 value is (F), and a
/// rank-r value (C, s1, …) is channels-last (s1, …, C).
enum ImportedValue {
    case constant(ConstantArray)
    case tensor(node: String, shape: [Int])
}

struct Importer {
    let path: String
    let opset: Int
    static let batch = Int64.min

    var nodes: [Node] = []
    var shapes: [String: [Int]] = [:]
    var values: [String: ImportedValue] = [:]
    var names: Set<String> = []
    /// The static batch size the input declares (1 for most PyTorch exports), if any.
    var declaredBatch: Int64?
    /// Values held in another axis order than the standard one (ONNXImporterArrangement).
    var arranged: [String: [Int]] = [:]
    /// How many node inputs read each value, and the graph's outputs.
    var readers: [String: Int] = [:]
    var graphOutputs: Set<String> = []

    init(path: String, opset: Int) {
        self.path = path
        self.opset = opset
    }

    // MARK: - Errors, names, nodes

    func damaged(_ detail: String) -> ONNXReadError { .damaged(path: path, detail: detail) }

    func unsupported(_ node: Onnx_NodeProto, _ detail: String) -> ONNXReadError {
        .unsupported(path: path, node: node.name.isEmpty ? (node.output.first ?? "?") : node.name, op: node.opType, detail: detail)
    }

    mutating func fresh(_ base: String) -> String {
        var name = base.isEmpty ? "node" : base, index = 1
        while names.contains(name) { name = "\(base)_\(index)"; index += 1 }
        names.insert(name)
        return name
    }

    /// Appends an IR node; returns its name.
    mutating func emit(_ base: String, _ op: Op, _ inputs: [String], for onnx: Onnx_NodeProto? = nil) throws -> String {
        let name = fresh(base)
        let node = Node(name: name, operation: op, inputs: inputs)
        do {
            shapes[name] = try Graph.outputShape(of: node, inputShapes: inputs.map { shapes[$0]! })
        } catch {
            if let onnx { throw unsupported(onnx, "\(error)") }
            throw damaged("\(error)")
        }
        nodes.append(node)
        return name
    }

    // MARK: - Layouts

    /// The IR shape of a runtime tensor of per-sample ONNX shape `s`.
    static func irShape(_ s: [Int]) -> [Int] { s.count <= 1 ? s : Array(s.dropFirst()) + [s[0]] }
    /// IR (channels-last) → ONNX order, as a transpose of the IR value.
    static func toONNXOrder(rank: Int) -> [Int] { [rank - 1] + Array(0..<(rank - 1)) }
    /// ONNX order → IR (channels-last).
    static func toIROrder(rank: Int) -> [Int] { Array(1..<rank) + [0] }

    /// A transpose of an IR value, or the value itself when it moves no element (only axes of size 1 move).
    mutating func permute(_ node: String, _ perm: [Int], base: String) throws -> String {
        let shape = shapes[node]!
        let moved = perm.filter { shape[$0] != 1 }
        if moved == moved.sorted() {
            let target = perm.map { shape[$0] }
            return target == shape ? node : try emit(base, .reshape(target), [node])
        }
        return try emit(base, .transpose(perm), [node])
    }

    /// A runtime value reshaped from per-sample ONNX shape `from` to `to` in ONNX element order.
    mutating func reshape(_ node: String, from: [Int], to: [Int], base: String) throws -> String {
        var current = node
        if from.count >= 2 { current = try permute(current, Self.toONNXOrder(rank: from.count), base: base + "/to_nchw") }
        if shapes[current]! != to { current = try emit(base + "/reshape", .reshape(to), [current]) }
        if to.count >= 2 {
            let onnxOrdered = current
            current = try permute(onnxOrdered, Self.toIROrder(rank: to.count), base: base + "/to_nhwc")
        }
        return current
    }

    // MARK: - Values

    func value(_ name: String, of node: Onnx_NodeProto) throws -> ImportedValue {
        guard let value = values[name] else { throw unsupported(node, "input '\(name)', which no earlier node or initializer produces,") }
        return value
    }

    func tensorInput(_ node: Onnx_NodeProto, _ index: Int) throws -> (node: String, shape: [Int]) {
        guard index < node.input.count, !node.input[index].isEmpty else { throw unsupported(node, "a missing input \(index)") }
        guard case let .tensor(name, shape) = try value(node.input[index], of: node) else {
            throw unsupported(node, "a constant where a computed tensor is expected (input \(index))")
        }
        return (name, shape)
    }

    func constantInput(_ node: Onnx_NodeProto, _ index: Int) throws -> ConstantArray? {
        guard index < node.input.count, !node.input[index].isEmpty else { return nil }
        guard case let .constant(array) = try value(node.input[index], of: node) else {
            throw unsupported(node, "a computed tensor as input \(index), which must be a constant (weights, shapes)")
        }
        return array
    }

    /// A tensor stored in the file, its sizes checked against the bytes present before conversion.
    func constant(_ tensor: Onnx_TensorProto) throws -> ConstantArray {
        let shape = tensor.dims.map { Int(clamping: $0) }
        guard tensor.dataLocation != .external, tensor.externalData.isEmpty else {
            throw damaged("tensor '\(tensor.name)' keeps its data in an external file, which bnkit does not read")
        }
        guard shape.allSatisfy({ $0 >= 0 }), let count = Tensor.elementCount(shape.isEmpty ? [1] : shape), count <= 1 << 31 else {
            throw damaged("tensor '\(tensor.name)' has invalid dimensions \(tensor.dims)")
        }
        let raw = tensor.rawData
        func fail(_ what: String) -> ONNXReadError { damaged("tensor '\(tensor.name)' holds \(what), its dimensions \(shape) need \(count) values") }
        switch Onnx_TensorProto.DataType(rawValue: Int(tensor.dataType)) {
        case .float?:
            if tensor.hasRawData {
                guard raw.count == count * 4 else { throw fail("\(raw.count) bytes") }
                let values = raw.withUnsafeBytes { bytes in (0..<count).map { Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) } }
                return ConstantArray(shape: shape, floats: values)
            }
            guard tensor.floatData.count == count else { throw fail("\(tensor.floatData.count) values") }
            return ConstantArray(shape: shape, floats: tensor.floatData)
        case .double?:
            if tensor.hasRawData {
                guard raw.count == count * 8 else { throw fail("\(raw.count) bytes") }
                let values = raw.withUnsafeBytes { bytes in (0..<count).map { Float(Double(bitPattern: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)))) } }
                return ConstantArray(shape: shape, floats: values)
            }
            guard tensor.doubleData.count == count else { throw fail("\(tensor.doubleData.count) values") }
            return ConstantArray(shape: shape, floats: tensor.doubleData.map { Float($0) })
        case .int64?:
            if tensor.hasRawData {
                guard raw.count == count * 8 else { throw fail("\(raw.count) bytes") }
                let values = raw.withUnsafeBytes { bytes in (0..<count).map { Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) } }
                return ConstantArray(shape: shape, ints: values)
            }
            guard tensor.int64Data.count == count else { throw fail("\(tensor.int64Data.count) values") }
            return ConstantArray(shape: shape, ints: tensor.int64Data)
        case .int32?, .int8?, .uint8?, .int16?, .uint16?, .bool?:
            if tensor.hasRawData {
                let type = Int(tensor.dataType)
                let width = type == Onnx_TensorProto.DataType.int32.rawValue ? 4
                    : (type == Onnx_TensorProto.DataType.int16.rawValue || type == Onnx_TensorProto.DataType.uint16.rawValue ? 2 : 1)
                guard raw.count == count * width else { throw fail("\(raw.count) bytes") }
                let values: [Int64] = raw.withUnsafeBytes { bytes in
                    (0..<count).map { i in
                        switch width {
                        case 4: Int64(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)))
                        case 2: Int64(Int16(littleEndian: bytes.loadUnaligned(fromByteOffset: i * 2, as: Int16.self)))
                        default: Int64(bytes[i])
                        }
                    }
                }
                return ConstantArray(shape: shape, ints: values)
            }
            guard tensor.int32Data.count == count else { throw fail("\(tensor.int32Data.count) values") }
            return ConstantArray(shape: shape, ints: tensor.int32Data.map { Int64($0) })
        default:
            throw damaged("tensor '\(tensor.name)' has data type \(tensor.dataType), which bnkit does not read")
        }
    }

    // MARK: - The graph

    mutating func convert(_ graph: Onnx_GraphProto) throws -> Graph {
        for initializer in graph.initializer {
            values[initializer.name] = .constant(try constant(initializer))
        }
        let inputs = graph.input.filter { values[$0.name] == nil }
        guard inputs.count == 1 else {
            throw damaged(inputs.isEmpty ? "the graph has no input" : "the graph has \(inputs.count) inputs (\(inputs.map(\.name).joined(separator: ", "))); one is supported")
        }
        let input = inputs[0]
        guard input.type.tensorType.elemType == Int32(Onnx_TensorProto.DataType.float.rawValue) else {
            throw damaged("input '\(input.name)' is not float32")
        }
        let dims = input.type.tensorType.shape.dim
        guard dims.count >= 2, dims.count <= 4 else { throw damaged("input '\(input.name)' has rank \(dims.count) (2 to 4 are supported)") }
        var sample: [Int] = []
        for dim in dims.dropFirst() {
            guard case .dimValue(let v)? = dim.value, v > 0, v < 1 << 24 else {
                throw damaged("input '\(input.name)' has a dimension other than the batch that is not a fixed size")
            }
            sample.append(Int(v))
        }
        if case .dimValue(let v)? = dims[0].value { declaredBatch = v }
        let inputNode = fresh(input.name)
        nodes.append(Node(name: inputNode, operation: .input(shape: sample), inputs: []))
        shapes[inputNode] = sample
        // The one change of layout: (C, H, W) as fed → channels-last.
        let irInput = sample.count >= 2 ? try permute(inputNode, Self.toIROrder(rank: sample.count), base: input.name + "/to_nhwc") : inputNode
        values[input.name] = .tensor(node: irInput, shape: sample)
        for node in graph.node { for name in node.input { readers[name, default: 0] += 1 } }
        graphOutputs = Set(graph.output.map(\.name))
        for node in graph.node {
            try importNode(node)
        }
        guard graph.output.count == 1, let output = graph.output.first else {
            throw damaged("the graph has \(graph.output.count) outputs; one is supported")
        }
        try standardize(output.name, base: output.name)
        guard case let .tensor(node, shape)? = values[output.name] else { throw damaged("output '\(output.name)' is not computed by the graph") }
        // A map output in the layout the graph declares.
        let last = shape.count >= 2 ? try permute(node, Self.toONNXOrder(rank: shape.count), base: output.name + "/to_nchw") : node
        let final = last == inputNode || nodes.last?.name != last ? try emit(output.name, .identity, [last]) : last
        do {
            return try Graph(name: graph.name.isEmpty ? "onnx" : graph.name, nodes: nodes, outputs: [final])
        } catch {
            throw damaged("\(error)")
        }
    }
}
