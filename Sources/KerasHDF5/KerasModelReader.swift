import Foundation
import HDF5
import ModelIR

/// A model read from a Keras file, with what the file says about itself.
public struct KerasModel: Sendable {
    public var graph: Graph
    /// `keras_version` (e.g. "2.21.0" for tf_keras, "3.15.1").
    public var kerasVersion: String?
    /// `backend` (e.g. "tensorflow").
    public var backend: String?
    /// The container: a legacy `.h5` or a Keras 3 `.keras` archive.
    public var container: KerasContainer
    /// Configs, weight names and optimizer state as stored (legacy `.h5` only),
    /// so the model can be written back as it came.
    public var provenance: KerasProvenance?
}

/// The two whole-model containers Keras writes.
public enum KerasContainer: String, Sendable {
    case hdf5 = "Keras HDF5 (.h5)"
    case archive = "Keras 3 archive (.keras)"
}

/// Reads whole-model Keras files written by Keras 2 (tf_keras) or Keras 3:
/// the classic HDF5 layout (`model.save('x.h5')`) and Keras 3 `.keras`
/// archives, recognised by content.
///
/// Weights are matched by their order in each layer's `weight_names` and the
/// roles that order implies (kernel, bias; gamma, beta, moving mean, moving
/// variance), never by guessing names. Every weight's shape is checked
/// against the layer's configuration.
public enum KerasModelReader {
    /// Reads a Keras file in this process. libhdf5 is not written for untrusted input:
    /// a crafted file can crash or hang it (bnkit's `Model.load` runs this in a child
    /// process with limits; see docs/HOSTILE_INPUT.md). Safe to call from several
    /// threads (libhdf5 calls are serialized by one lock).
    public static func read(path: String) throws -> KerasModel {
        try withHDF5Lock { try readLocked(path: path) }
    }

    private static func readLocked(path: String) throws -> KerasModel {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw KerasFileError.unreadable(path: path, detail: FileManager.default.fileExists(atPath: path) ? "permission denied" : "no such file")
        }
        if KerasArchive.isZip(path: path) {
            return try KerasArchive.read(path: path)
        }
        let file = try openHDF5(path)
        do {
            return try readLegacy(file, path: path)
        } catch let error as HDF5Error {
            throw KerasFileError.hdf5(path: path, error)
        }
    }

    static func openHDF5(_ path: String, shownAs shown: String? = nil) throws -> HDF5File {
        do {
            return try HDF5File.open(path)
        } catch let error as HDF5Error {
            if error.detail == "not an HDF5 file" { throw KerasFileError.notHDF5(path: shown ?? path) }
            throw KerasFileError.hdf5(path: shown ?? path, error)
        }
    }

    private static func readLegacy(_ file: HDF5File, path: String) throws -> KerasModel {
        let root = try file.root()
        guard try root.hasAttribute("model_config") else {
            throw KerasFileError.missingModelConfig(path: path, weightsOnly: try root.hasAttribute("layer_names"))
        }
        let config = try ModelConfigParser(path: path).parse(json: try root.stringAttribute("model_config"))
        guard try root.hasChild("model_weights"), try root.childKind("model_weights") == .group else {
            throw KerasFileError.missing(path: path, what: "the 'model_weights' group")
        }
        guard try root.allLinksAreHard("model_weights") else {
            throw KerasFileError.unsafeContent(path: path, detail: "'model_weights' is a soft or external link")
        }
        let version = try root.hasAttribute("keras_version") ? try root.stringAttribute("keras_version") : nil
        let source = LegacyH5Weights(path: path, group: try root.group("model_weights"))
        let graph = try GraphBuilder(path: path, kerasVersion: version).build(config, weights: source)
        let provenance = try KerasProvenance.read(root: root, weights: try root.group("model_weights"), graph: graph, path: path)
        return KerasModel(graph: graph, kerasVersion: version,
                          backend: try root.hasAttribute("backend") ? try root.stringAttribute("backend") : nil,
                          container: .hdf5, provenance: provenance)
    }
}

/// Turns a parsed config and its weights into a `Graph`, following Keras's
/// graph: Sequential chains, Functional `inbound_nodes`, shared layers
/// (one node per call, sharing the first call's weights) and nested models
/// (inlined, their layers named `outer/inner`).
struct GraphBuilder {
    let path: String
    let kerasVersion: String?

    private final class State {
        var nodes: [Node] = []
        var shapes: [String: [Int]] = [:]
    }

    private let state = State()

    private var isKeras2: Bool {
        kerasVersion.map { $0.hasPrefix("2.") || $0.hasPrefix("1.") } ?? false
    }

    init(path: String, kerasVersion: String?) {
        self.path = path
        self.kerasVersion = kerasVersion
    }

    func build(_ config: ModelConfig, weights: WeightSource) throws -> Graph {
        let outputs = try addModel(config, weights: weights, prefix: "", ownerPrefix: nil, boundInputs: nil)
        do {
            return try Graph(name: config.name, nodes: state.nodes, outputs: outputs)
        } catch let error as ModelError {
            throw KerasFileError.inconsistentModel(path: path, error)
        }
    }

    /// Adds a model's layers. `boundInputs` (nested models) are the outer
    /// node names its inputs read; nil at the top, where inputs become input nodes.
    /// Returns the names of the nodes holding its outputs.
    /// `ownerPrefix`: for a repeated call of a nested model, the prefix of its
    /// first call, whose nodes own the weights.
    private func addModel(_ config: ModelConfig, weights: WeightSource, prefix: String, ownerPrefix: String?,
                          boundInputs: [String]?) throws -> [String] {
        if config.isSequential {
            return [try addSequential(config, weights: weights, prefix: prefix, ownerPrefix: ownerPrefix, boundInput: boundInputs?.first)]
        }
        return try addFunctional(config, weights: weights, prefix: prefix, ownerPrefix: ownerPrefix, boundInputs: boundInputs)
    }

    private func addSequential(_ config: ModelConfig, weights: WeightSource, prefix: String, ownerPrefix: String?,
                               boundInput: String?) throws -> String {
        var layers = config.layers[...]
        var current: String
        if let first = layers.first, first.className == "InputLayer" {
            layers = layers.dropFirst()
            current = try boundInput ?? addInput(prefix + first.name, shape: try inputShape(of: first))
        } else if let boundInput {
            current = boundInput
        } else if let first = layers.first, let shape = first.shape("batch_input_shape", dropBatch: true) {
            current = try addInput(prefix + "input", shape: shape)
        } else if let shape = LayerConfig.shape(config.buildInputShape, dropBatch: true) {
            current = try addInput(prefix + "input", shape: shape)
        } else {
            throw KerasFileError.badConfig(path: path, detail: "the model declares no fixed input shape")
        }
        for layer in layers {
            current = try addLayerCall(layer, call: 0, inputs: [current], weights: weights, prefix: prefix, ownerPrefix: ownerPrefix).first!
        }
        return current
    }

    private func addFunctional(_ config: ModelConfig, weights: WeightSource, prefix: String, ownerPrefix: String?,
                               boundInputs: [String]?) throws -> [String] {
        // A Keras tensor reference -> the node holding that tensor.
        var resolved: [String: String] = [:]
        func key(_ ref: TensorRef) -> String { "\(ref.layer)\u{0}\(ref.node)\u{0}\(ref.tensor)" }

        for (index, ref) in config.inputs.enumerated() {
            guard let layer = config.layers.first(where: { $0.name == ref.layer }), layer.className == "InputLayer" else {
                throw KerasFileError.badConfig(path: path, detail: "input '\(ref.layer)' is not an InputLayer")
            }
            if let boundInputs {
                guard index < boundInputs.count else {
                    throw KerasFileError.badConfig(path: path, detail: "nested model '\(prefix)' gets \(boundInputs.count) inputs, needs \(config.inputs.count)")
                }
                resolved[key(ref)] = boundInputs[index]
            } else {
                resolved[key(ref)] = try addInput(prefix + layer.name, shape: try inputShape(of: layer))
            }
        }
        // Layer calls whose inputs are all known, until none is left (Keras lists
        // layers in an order where this terminates; a cycle is an error).
        var pending: [(layer: LayerConfig, call: Int)] = config.layers.filter { $0.className != "InputLayer" }
            .flatMap { layer in layer.calls.indices.map { (layer, $0) } }
        while !pending.isEmpty {
            var progressed = false
            var remaining: [(layer: LayerConfig, call: Int)] = []
            for item in pending {
                let refs = item.layer.calls[item.call]
                let inputs = refs.compactMap { resolved[key($0)] }
                guard inputs.count == refs.count else { remaining.append(item); continue }
                let outputs = try addLayerCall(item.layer, call: item.call, inputs: inputs, weights: weights,
                                               prefix: prefix, ownerPrefix: ownerPrefix)
                // tf_keras numbers the calls of a nested model from 1: its node 0 is the
                // model's own input node, which the config leaves out.
                let offset = item.layer.isModel && isKeras2 ? 1 : 0
                for (tensor, name) in outputs.enumerated() {
                    resolved[key(TensorRef(layer: item.layer.name, node: item.call + offset, tensor: tensor))] = name
                }
                progressed = true
            }
            guard progressed else {
                let names = remaining.map(\.layer.name).joined(separator: ", ")
                throw KerasFileError.badConfig(path: path, detail: "layers \(names) read tensors that no layer produces")
            }
            pending = remaining
        }
        return try config.outputs.map { ref in
            guard let name = resolved[key(ref)] else {
                throw KerasFileError.badConfig(path: path, detail: "output '\(ref.layer)' is not produced by the model")
            }
            return name
        }
    }

    /// The node name of call `call` of a layer; the first call keeps the layer's name.
    private func nodeName(_ prefix: String, _ layer: String, call: Int) -> String {
        call == 0 ? prefix + layer : prefix + layer + "#\(call)"
    }

    /// Adds one call of a layer; returns the names of the nodes holding its outputs.
    private func addLayerCall(_ layer: LayerConfig, call: Int, inputs: [String], weights: WeightSource, prefix: String,
                              ownerPrefix: String?) throws -> [String] {
        if layer.isModel {
            let inner = try ModelConfigParser(path: path).parse(entry: layer.entry, depth: 1)
            let innerPrefix = nodeName(prefix, layer.name, call: call) + "/"
            let innerOwner = ownerPrefix.map { nodeName($0, layer.name, call: 0) + "/" }
                ?? (call == 0 ? nil : nodeName(prefix, layer.name, call: 0) + "/")
            return try addModel(inner, weights: try weights.nested(layer), prefix: innerPrefix, ownerPrefix: innerOwner, boundInputs: inputs)
        }
        let inputShapes = inputs.map { state.shapes[$0]! }
        var translator = LayerTranslator(path: path, layer: layer, inputShapes: inputShapes,
                                         weights: try weights.weights(of: layer, inputShapes: inputShapes), kerasVersion: kerasVersion)
        if call < layer.callArguments.count { translator.callArguments = layer.callArguments[call] }
        let translation = try translator.translation()
        let name = nodeName(prefix, layer.name, call: call)
        let owner = ownerPrefix.map { nodeName($0, layer.name, call: 0) } ?? (call == 0 ? nil : nodeName(prefix, layer.name, call: 0))
        var inputs = inputs
        for prelude in translation.preludes {
            let preludeName = name + "/" + prelude.suffix
            try append(Node(name: preludeName, operation: prelude.operation, inputs: [inputs[prelude.input]]))
            inputs[prelude.input] = preludeName
        }
        let operation = translation.operation
        try append(Node(name: name, operation: operation, inputs: inputs,
                        sharesWeightsWith: operation.weights.isEmpty ? nil : owner))
        return [name]
    }

    private func addInput(_ name: String, shape: [Int]) throws -> String {
        try append(Node(name: name, operation: .input(shape: shape), inputs: []))
        return name
    }

    private func inputShape(of layer: LayerConfig) throws -> [Int] {
        guard let shape = layer.shape("batch_input_shape", dropBatch: true) ?? layer.shape("batch_shape", dropBatch: true) else {
            throw KerasFileError.unsupportedFeature(path: path, layer: layer.name, className: layer.className,
                                                    feature: "an input without a fixed shape (every dimension but the batch must be known)")
        }
        return shape
    }

    private func append(_ node: Node) throws {
        guard state.shapes[node.name] == nil else {
            throw KerasFileError.badConfig(path: path, detail: "two layers are named '\(node.name)'")
        }
        do {
            state.shapes[node.name] = try Graph.outputShape(of: node, inputShapes: node.inputs.map { state.shapes[$0]! })
        } catch let error as ModelError {
            throw KerasFileError.badWeights(path: path, layer: node.name, detail: "\(error)")
        }
        state.nodes.append(node)
    }
}

/// The lock that serializes bnkit's libhdf5 use (see `withHDF5Lock`): whoever starts a
/// child process can hold it so the child inherits no open HDF5 file (whose lock would
/// then outlive the parent's close).
public enum KerasHDF5Library {
    public static func serialized<T>(_ body: () throws -> T) rethrows -> T {
        try withHDF5Lock(body)
    }
}
