import Foundation
import HDF5
import ModelIR

/// A model read from a Keras `.h5` file, with what the file says about itself.
public struct KerasModel: Sendable {
    public var graph: Graph
    /// `keras_version` at the root (e.g. "2.21.0" for tf_keras, "3.15.1").
    public var kerasVersion: String?
    /// `backend` at the root (e.g. "tensorflow").
    public var backend: String?
}

/// Reads whole-model Keras HDF5 files (`model.save('x.h5')`) written by
/// Keras 2 (tf_keras) or Keras 3 into a `Graph`.
///
/// Weights are matched by their order in each layer's `weight_names` and the
/// roles that order implies (kernel, bias; gamma, beta, moving mean, moving
/// variance), never by guessing names. Every weight's shape is checked
/// against the layer's configuration.
public enum KerasModelReader {
    public static func read(path: String) throws -> KerasModel {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw KerasFileError.unreadable(path: path, detail: FileManager.default.fileExists(atPath: path) ? "permission denied" : "no such file")
        }
        let file: HDF5File
        do {
            file = try HDF5File.open(path)
        } catch let error as HDF5Error {
            if error.detail == "not an HDF5 file" { throw KerasFileError.notHDF5(path: path) }
            throw KerasFileError.hdf5(path: path, error)
        }
        do {
            return try KerasFileLoader(file: file, path: path).load()
        } catch let error as HDF5Error {
            throw KerasFileError.hdf5(path: path, error)
        }
    }
}

/// Reads one open file; one instance per read.
struct KerasFileLoader {
    let file: HDF5File
    let path: String

    func load() throws -> KerasModel {
        let root = try file.root()
        guard try root.hasAttribute("model_config") else {
            throw KerasFileError.missingModelConfig(path: path, weightsOnly: try root.hasAttribute("layer_names"))
        }
        let configJSON = try root.stringAttribute("model_config")
        let config = try ModelConfigParser(path: path).parse(configJSON)
        guard try root.hasChild("model_weights"), try root.childKind("model_weights") == .group else {
            throw KerasFileError.missing(path: path, what: "the 'model_weights' group")
        }
        let weights = try root.group("model_weights")
        let graph = try buildGraph(config, weights: weights)
        return KerasModel(
            graph: graph,
            kerasVersion: try optionalString(root, "keras_version"),
            backend: try optionalString(root, "backend"))
    }

    private func optionalString(_ group: HDF5Group, _ name: String) throws -> String? {
        try group.hasAttribute(name) ? try group.stringAttribute(name) : nil
    }

    // MARK: - Graph

    private func buildGraph(_ config: ModelConfig, weights: HDF5Group) throws -> Graph {
        var nodes: [Node] = []
        var shapes: [String: [Int]] = [:]
        var remaining = config.layers[...]

        // The input: an InputLayer, or the first layer's batch_input_shape,
        // or (Keras 3 Sequential) build_config.input_shape.
        if config.isSequential {
            let inputShape: [Int]
            let inputName: String
            if let first = remaining.first, first.className == "InputLayer" {
                inputShape = try self.inputShape(of: first)
                inputName = first.name
                remaining = remaining.dropFirst()
            } else if let first = remaining.first, let shape = first.shape("batch_input_shape", dropBatch: true) {
                inputShape = shape
                inputName = "input"
            } else if let build = config.buildInputShape,
                      let shape = LayerConfig(className: "", name: "", config: ["s": build], inboundLayers: []).shape("s", dropBatch: true) {
                inputShape = shape
                inputName = "input"
            } else {
                throw KerasFileError.badConfig(path: path, detail: "the model declares no fixed input shape")
            }
            try append(Node(name: inputName, operation: .input(shape: inputShape), inputs: []), to: &nodes, shapes: &shapes)
        }

        for layer in remaining {
            if layer.className == "InputLayer" {
                try append(Node(name: layer.name, operation: .input(shape: try inputShape(of: layer)), inputs: []),
                           to: &nodes, shapes: &shapes)
                continue
            }
            let inputs = config.isSequential ? [nodes.last!.name] : layer.inboundLayers
            guard inputs.count == 1 else {
                throw KerasFileError.unsupportedFeature(path: path, layer: layer.name, className: layer.className,
                                                        feature: "\(inputs.count) inputs")
            }
            guard let inputShape = shapes[inputs[0]] else {
                throw KerasFileError.badConfig(path: path, detail: "layer '\(layer.name)' reads '\(inputs[0])', which is not defined before it")
            }
            let tensors = try layerWeights(layer.name, in: weights)
            let operation = try LayerTranslator(path: path, layer: layer, inputShape: inputShape, weights: tensors).operation()
            try append(Node(name: layer.name, operation: operation, inputs: inputs), to: &nodes, shapes: &shapes)
        }

        let outputs = config.isSequential ? [nodes.last!.name] : config.outputLayers
        do {
            return try Graph(name: config.name, nodes: nodes, outputs: outputs)
        } catch let error as ModelError {
            throw KerasFileError.inconsistentModel(path: path, error)
        }
    }

    private func inputShape(of layer: LayerConfig) throws -> [Int] {
        guard let shape = layer.shape("batch_input_shape", dropBatch: true) ?? layer.shape("batch_shape", dropBatch: true) else {
            throw KerasFileError.badConfig(path: path, detail: "input layer '\(layer.name)' has no fixed shape")
        }
        return shape
    }

    private func append(_ node: Node, to nodes: inout [Node], shapes: inout [String: [Int]]) throws {
        guard shapes[node.name] == nil else {
            throw KerasFileError.badConfig(path: path, detail: "two layers are named '\(node.name)'")
        }
        do {
            shapes[node.name] = try Graph.outputShape(of: node, inputShapes: node.inputs.map { shapes[$0]! })
        } catch let error as ModelError {
            throw KerasFileError.badWeights(path: path, layer: node.name, detail: "\(error)")
        }
        nodes.append(node)
    }

    // MARK: - Weights

    /// The datasets listed in `model_weights/<layer>`'s `weight_names`, in order.
    private func layerWeights(_ layer: String, in weights: HDF5Group) throws -> [Tensor] {
        guard try weights.hasChild(layer) else { return [] }
        let group = try weights.group(layer)
        let names = try chunkedStrings(group, "weight_names")
        return try names.map { name in
            guard try group.hasChild(name) else {
                throw KerasFileError.badWeights(path: path, layer: layer, detail: "weight '\(name)' is listed but not stored")
            }
            let dataset = try group.dataset(name)
            let shape = try dataset.shape()
            let values = try dataset.readFloats()
            return try Tensor(shape: shape, values: values)
        }
    }

    /// A string-array attribute that Keras may have split into `name0`, `name1`, ...
    private func chunkedStrings(_ group: HDF5Group, _ name: String) throws -> [String] {
        if try group.hasAttribute(name) { return try group.stringArrayAttribute(name) }
        var values: [String] = []
        var index = 0
        while try group.hasAttribute("\(name)\(index)") {
            values += try group.stringArrayAttribute("\(name)\(index)")
            index += 1
        }
        return values
    }
}
