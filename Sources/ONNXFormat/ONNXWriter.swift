import Foundation
import ModelIR
import ONNXProto
import SwiftProtobuf

/// Why a graph cannot be written as ONNX.
public enum ONNXWriteError: Error, CustomStringConvertible, Equatable, Sendable {
    case unsupported(node: String, detail: String)

    public var description: String {
        switch self {
        case let .unsupported(node, detail): "layer '\(node)' cannot be written as ONNX: \(detail)"
        }
    }
}

/// Writes a `Graph` as an ONNX model (opset 17, IR version 8), knowing nothing of kernels.
///
/// The graph is Keras's layout (channels last); ONNX's convolutions and pooling are channels
/// first. The input keeps Keras's layout (N, …, C) with a dynamic batch dimension, so a user
/// feeds the arrays they hold; one Transpose inside turns it to channels first, and everything
/// runs there: weights are laid out for ONNX at export, Flatten and Reshape see the Keras order
/// (a Transpose back before them), and a map output is transposed back to channels last.
/// BatchNormalization layers are written as `BatchNormalization` nodes (fold first to have none).
public enum ONNXWriter {
    public static let opset: Int64 = 17

    /// The serialized ModelProto. `metadata` goes to `metadata_props` (producer, source, …).
    public static func encode(_ graph: Graph, metadata: [String: String] = [:]) throws -> Data {
        var builder = try Builder(graph: graph)
        let proto = try builder.model(metadata: metadata)
        return try proto.serializedData()
    }
}

/// Builds the ONNX graph node by node. Every tensor of the IR graph is held in "ONNX layout":
/// rank 1 (features) as (N, F); rank 2 (steps, C) as (N, C, L); rank 3 (H, W, C) as (N, C, H, W).
struct Builder {
    let graph: Graph
    let shapes: [String: [Int]]
    var nodes: [Onnx_NodeProto] = []
    var initializers: [Onnx_TensorProto] = []
    var used: Set<String> = []
    /// The ONNX tensor holding each IR node's value (in ONNX layout).
    var value: [String: String] = [:]

    init(graph: Graph) throws {
        self.graph = graph
        do { shapes = try graph.inferShapes() } catch { throw ONNXWriteError.unsupported(node: graph.name, detail: "\(error)") }
    }

    // MARK: - Names, constants, nodes

    mutating func fresh(_ base: String) -> String {
        let clean = String(base.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." || $0 == "/" ? $0 : "_" })
        var name = clean, index = 1
        while used.contains(name) { name = "\(clean)_\(index)"; index += 1 }
        used.insert(name)
        return name
    }

    mutating func constant(_ base: String, shape: [Int], values: [Float]) -> String {
        var tensor = Onnx_TensorProto()
        tensor.name = fresh(base)
        tensor.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        tensor.dims = shape.map(Int64.init)
        var data = Data(count: values.count * 4)
        data.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt32.self)
            for (i, v) in values.enumerated() { words[i] = v.bitPattern.littleEndian }
        }
        tensor.rawData = data
        initializers.append(tensor)
        return tensor.name
    }

    mutating func constantInt64(_ base: String, _ values: [Int64]) -> String {
        var tensor = Onnx_TensorProto()
        tensor.name = fresh(base)
        tensor.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
        tensor.dims = [Int64(values.count)]
        tensor.int64Data = values
        initializers.append(tensor)
        return tensor.name
    }

    enum Attribute {
        case int(Int64), ints([Int64]), float(Float), string(String)
    }

    /// Appends a node; returns its output's name.
    @discardableResult
    mutating func add(_ op: String, _ inputs: [String], name base: String, _ attributes: [String: Attribute] = [:], output: String? = nil) -> String {
        var node = Onnx_NodeProto()
        node.opType = op
        node.name = fresh(base + "/" + op)
        node.input = inputs
        let out = output ?? fresh(base + "/" + op + ":0")
        node.output = [out]
        for key in attributes.keys.sorted() {
            var attribute = Onnx_AttributeProto()
            attribute.name = key
            switch attributes[key]! {
            case .int(let v): attribute.type = .int; attribute.i = v
            case .ints(let v): attribute.type = .ints; attribute.ints = v
            case .float(let v): attribute.type = .float; attribute.f = v
            case .string(let v): attribute.type = .string; attribute.s = Data(v.utf8)
            }
            node.attribute.append(attribute)
        }
        nodes.append(node)
        return out
    }

    // MARK: - Layout

    /// ONNX layout → channels last (with the batch axis), and back.
    static func toChannelsLast(rank: Int) -> [Int64] { [0] + Array(stride(from: 2, through: Int64(rank), by: 1)) + [1] }
    static func toChannelsFirst(rank: Int) -> [Int64] { [0, Int64(rank)] + (1..<Int64(rank)).map { $0 } }

    /// An IR axis (batch excluded) of a rank-`rank` tensor, as an ONNX-layout axis.
    static func axis(_ axis: Int, rank: Int) -> Int64 {
        switch rank {
        case 1: 1
        default: axis == rank - 1 ? 1 : Int64(axis + 2)
        }
    }

    /// A per-channel vector shaped to broadcast against a tensor in ONNX layout.
    static func channelShape(_ channels: Int, rank: Int) -> [Int] { [channels] + [Int](repeating: 1, count: rank - 1) }

    // MARK: - The model

    mutating func model(metadata: [String: String]) throws -> Onnx_ModelProto {
        let input = try graph.inputNode()
        guard graph.outputs.count == 1 else {
            throw ONNXWriteError.unsupported(node: graph.outputs.joined(separator: ", "), detail: "the model has \(graph.outputs.count) outputs; one is supported")
        }
        var inputInfo = Onnx_ValueInfoProto()
        inputInfo.name = fresh(input.name)
        inputInfo.type = Self.tensorType(shape: shapes[input.name]!)
        let inputShape = shapes[input.name]!
        guard (1...3).contains(inputShape.count) else {
            throw ONNXWriteError.unsupported(node: input.name, detail: "an input of rank \(inputShape.count)")
        }
        value[input.name] = inputShape.count == 1 ? inputInfo.name
            : add("Transpose", [inputInfo.name], name: input.name, ["perm": .ints(Self.toChannelsFirst(rank: inputShape.count))])
        for node in graph.nodes where node.name != input.name {
            try emit(node)
        }
        let outputNode = graph.outputs[0], outputShape = shapes[outputNode]!
        var outputInfo = Onnx_ValueInfoProto()
        outputInfo.name = fresh("output")
        outputInfo.type = Self.tensorType(shape: outputShape)
        if outputShape.count == 1 {
            add("Identity", [value[outputNode]!], name: outputNode, output: outputInfo.name)
        } else {
            add("Transpose", [value[outputNode]!], name: outputNode, ["perm": .ints(Self.toChannelsLast(rank: outputShape.count))], output: outputInfo.name)
        }
        var onnxGraph = Onnx_GraphProto()
        onnxGraph.name = graph.name
        onnxGraph.node = nodes
        onnxGraph.initializer = initializers
        onnxGraph.input = [inputInfo]
        onnxGraph.output = [outputInfo]
        var model = Onnx_ModelProto()
        model.irVersion = 8
        model.producerName = "bnkit"
        model.producerVersion = "1"
        var opset = Onnx_OperatorSetIdProto()
        opset.domain = ""
        opset.version = ONNXWriter.opset
        model.opsetImport = [opset]
        model.graph = onnxGraph
        model.metadataProps = metadata.keys.sorted().map { key in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = metadata[key]!
            return entry
        }
        return model
    }

    static func tensorType(shape: [Int]) -> Onnx_TypeProto {
        var tensor = Onnx_TypeProto.Tensor()
        tensor.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        var dims = Onnx_TensorShapeProto()
        var batch = Onnx_TensorShapeProto.Dimension()
        batch.dimParam = "N"
        dims.dim = [batch] + shape.map { size in
            var d = Onnx_TensorShapeProto.Dimension()
            d.dimValue = Int64(size)
            return d
        }
        tensor.shape = dims
        var type = Onnx_TypeProto()
        type.tensorType = tensor
        return type
    }
}
