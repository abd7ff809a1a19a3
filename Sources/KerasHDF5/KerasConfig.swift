import BoundedJSON
import Foundation
import ModelIR

/// A reference to one output of one call of a layer: Keras's
/// `[layer, node_index, tensor_index]`.
struct TensorRef: Equatable {
    let layer: String
    let node: Int
    let tensor: Int
}

/// One layer of a Keras model config, as bnkit needs it.
struct LayerConfig {
    let className: String
    let name: String
    let config: [String: Any]
    /// For each call of the layer (Functional models), the tensors it reads.
    let calls: [[TensorRef]]
    /// For each call, its keyword arguments that are not tensors (tf_keras TFOpLambda's
    /// constants such as `{"y": 3.0}`); empty when there are none.
    var callArguments: [[String: Any]] = []
    /// The whole `{class_name, config}` entry (nested models are parsed from it).
    let entry: [String: Any]

    static let modelClasses: Set<String> = ["Sequential", "Functional", "Model"]
    /// The key of `callArguments` holding a Keras 3 call's positional arguments (numbers, or null for tensors).
    static let positionalKey = "__positional__"

    var isModel: Bool { Self.modelClasses.contains(className) }
}

/// The parsed architecture.
struct ModelConfig {
    let name: String
    let layers: [LayerConfig]
    let isSequential: Bool
    /// Functional models: `input_layers` and `output_layers`.
    let inputs: [TensorRef]
    let outputs: [TensorRef]
    /// Keras 3 Sequential models without an InputLayer: `build_config.input_shape` (batch axis included).
    let buildInputShape: [Any]?
}

/// Parses the JSON of `model_config` / `config.json` (Keras 2 and Keras 3 forms).
struct ModelConfigParser {
    let path: String

    /// Size and nesting caps: a model config larger or deeper than this is refused.
    static let maxBytes = 64 << 20
    static let maxDepth = 64

    func parse(json: String) throws -> ModelConfig {
        guard json.utf8.count <= Self.maxBytes else {
            throw KerasFileError.badConfig(path: path, detail: "larger than \(Self.maxBytes) bytes")
        }
        guard BoundedJSON.nestingDepth(json.utf8) <= Self.maxDepth * 4 else {
            throw KerasFileError.badConfig(path: path, detail: "nested deeper than bnkit accepts")
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(json.utf8))
        } catch {
            throw KerasFileError.badConfig(path: path, detail: "not JSON")
        }
        guard let root = object as? [String: Any] else {
            throw KerasFileError.badConfig(path: path, detail: "the top level is not an object")
        }
        return try parse(entry: root, depth: 0)
    }

    func parse(entry root: [String: Any], depth: Int) throws -> ModelConfig {
        guard depth < Self.maxDepth else { throw KerasFileError.badConfig(path: path, detail: "models nested too deeply") }
        guard let className = root["class_name"] as? String else {
            throw KerasFileError.badConfig(path: path, detail: "no 'class_name' at the top")
        }
        switch className {
        case "Sequential":
            return try sequential(root["config"])
        case "Functional", "Model":
            return try functional(root["config"])
        default:
            throw KerasFileError.unsupportedModel(path: path, className: className)
        }
    }

    private func sequential(_ config: Any?) throws -> ModelConfig {
        // Keras >= 2.2: {"name": ..., "layers": [...]}; older: the list itself.
        let layerList: [Any]
        var name = "sequential"
        var build: [Any]?
        if let dict = config as? [String: Any] {
            guard let list = dict["layers"] as? [Any] else {
                throw KerasFileError.badConfig(path: path, detail: "Sequential config has no 'layers' list")
            }
            layerList = list
            name = dict["name"] as? String ?? name
            build = (dict["build_config"] as? [String: Any])?["input_shape"] as? [Any]
        } else if let list = config as? [Any] {
            layerList = list
        } else {
            throw KerasFileError.badConfig(path: path, detail: "Sequential config is neither an object nor a list")
        }
        let layers = try layerList.enumerated().map { index, entry in try layer(entry, index: index, functional: false) }
        return ModelConfig(name: name, layers: layers, isSequential: true, inputs: [], outputs: [], buildInputShape: build)
    }

    private func functional(_ config: Any?) throws -> ModelConfig {
        guard let dict = config as? [String: Any], let layerList = dict["layers"] as? [Any] else {
            throw KerasFileError.badConfig(path: path, detail: "Functional config has no 'layers' list")
        }
        let layers = try layerList.enumerated().map { index, entry in try layer(entry, index: index, functional: true) }
        let inputs = refs(dict["input_layers"]), outputs = refs(dict["output_layers"])
        guard !outputs.isEmpty else { throw KerasFileError.badConfig(path: path, detail: "Functional config has no 'output_layers'") }
        guard !inputs.isEmpty else { throw KerasFileError.badConfig(path: path, detail: "Functional config has no 'input_layers'") }
        return ModelConfig(name: dict["name"] as? String ?? "model", layers: layers, isSequential: false,
                           inputs: inputs, outputs: outputs, buildInputShape: nil)
    }

    /// `["name", 0, 0]` or `[["name", 0, 0], ...]` (or a dict of them in Keras 3).
    private func refs(_ value: Any?) -> [TensorRef] {
        if let dict = value as? [String: Any] { return dict.keys.sorted().flatMap { refs(dict[$0]) } }
        guard let list = value as? [Any] else { return [] }
        if let ref = tensorRef(list) { return [ref] }
        return list.flatMap { refs($0) }
    }

    private func tensorRef(_ list: [Any]) -> TensorRef? {
        guard list.count >= 3, let name = list[0] as? String,
              let node = (list[1] as? NSNumber).flatMap({ Int(exactly: $0.doubleValue) }),
              let tensor = (list[2] as? NSNumber).flatMap({ Int(exactly: $0.doubleValue) }) else { return nil }
        return TensorRef(layer: name, node: node, tensor: tensor)
    }

    /// The tensors one call reads. Keras 2: `[["name", 0, 0, {}], ...]`;
    /// Keras 3: `{"args": [...__keras_tensor__ with "keras_history": ["name", 0, 0]...], "kwargs": {}}`.
    private func collect(_ value: Any, into refs: inout [TensorRef], depth: Int = 0) {
        guard depth < Self.maxDepth else { return }
        if let dict = value as? [String: Any] {
            if let config = dict["config"] as? [String: Any], let history = config["keras_history"] as? [Any],
               let ref = tensorRef(history) {
                refs.append(ref)
                return
            }
            if let args = dict["args"] { collect(args, into: &refs, depth: depth + 1) }
            return
        }
        if let list = value as? [Any] {
            if let ref = tensorRef(list) {
                refs.append(ref)
                return
            }
            for element in list { collect(element, into: &refs, depth: depth + 1) }
        }
    }

    private func layer(_ entry: Any, index: Int, functional: Bool) throws -> LayerConfig {
        guard let dict = entry as? [String: Any], let className = dict["class_name"] as? String else {
            throw KerasFileError.badConfig(path: path, detail: "layer \(index) has no 'class_name'")
        }
        guard let config = dict["config"] as? [String: Any] else {
            throw KerasFileError.badConfig(path: path, detail: "layer \(index) (\(className)) has no 'config'")
        }
        guard let name = dict["name"] as? String ?? config["name"] as? String else {
            throw KerasFileError.badConfig(path: path, detail: "layer \(index) (\(className)) has no name")
        }
        var calls: [[TensorRef]] = []
        var arguments: [[String: Any]] = []
        if functional {
            for node in dict["inbound_nodes"] as? [Any] ?? [] {
                var refs: [TensorRef] = []
                collect(node, into: &refs)
                // tf_keras TFOpLambda: [[x, 0, 0, {"y": <tensor ref or number>, "name": null}]]; a tensor
                // in the keyword arguments is a further input, anything else a constant.
                var constants: [String: Any] = [:]
                // (The call is stored as that one entry, or wrapped in a list of one.)
                let entry = (node as? [Any]).flatMap { $0.first is String ? $0 : ($0.count == 1 ? $0[0] as? [Any] : nil) }
                if className == "TFOpLambda" || className == "SlicingOpLambda", let entry, entry.count == 4,
                   let kwargs = entry[3] as? [String: Any] {
                    for key in kwargs.keys.sorted() {
                        if let list = kwargs[key] as? [Any], let ref = tensorRef(list) { refs.append(ref) } else { constants[key] = kwargs[key] }
                    }
                }
                // Keras 3 operations in the functional API (`x + 3.0` is keras.src.ops.numpy's Add):
                // {"args": [<tensor>, 3.0], ...}; the positional arguments, numbers kept, others null.
                if let call = node as? [String: Any], let args = call["args"] as? [Any] {
                    constants[LayerConfig.positionalKey] = args.map { $0 is NSNumber ? $0 : NSNull() }
                }
                calls.append(refs)
                arguments.append(constants)
            }
        }
        var layer = LayerConfig(className: className, name: name, config: config, calls: calls, entry: dict)
        layer.callArguments = arguments
        return layer
    }
}

extension LayerConfig {
    /// A fixed shape from a JSON list such as `[null, 784]`; nil when absent or not fixed.
    func shape(_ key: String, dropBatch: Bool) -> [Int]? {
        LayerConfig.shape(config[key], dropBatch: dropBatch)
    }

    static func shape(_ value: Any?, dropBatch: Bool) -> [Int]? {
        guard let list = value as? [Any] else { return nil }
        let dims = dropBatch ? Array(list.dropFirst()) : list
        var shape: [Int] = []
        for dim in dims {
            guard let number = dim as? NSNumber, let value = Int(exactly: number.doubleValue), value > 0 else { return nil }
            shape.append(value)
        }
        return shape
    }

    /// Two integers from `[a, b]` or a single `a` (kernel sizes, strides, ...).
    func pair(_ key: String, default value: [Int]? = nil) -> [Int]? {
        if let number = config[key] as? NSNumber, let n = Int(exactly: number.doubleValue) { return [n, n] }
        guard let list = config[key] as? [Any] else { return value }
        let values = list.compactMap { ($0 as? NSNumber).flatMap { Int(exactly: $0.doubleValue) } }
        return values.count == 2 && list.count == 2 ? values : nil
    }

    func bool(_ key: String, default value: Bool) -> Bool {
        (config[key] as? NSNumber)?.boolValue ?? value
    }

    func double(_ key: String) -> Double? {
        (config[key] as? NSNumber)?.doubleValue
    }

    /// One integer from `n` or `[n]` (1-D kernel sizes, strides, ...).
    func single(_ key: String, default value: Int? = nil) -> Int? {
        if let number = config[key] as? NSNumber { return Int(exactly: number.doubleValue) }
        guard let list = config[key] as? [Any] else { return config[key] == nil ? value : nil }
        guard list.count == 1, let number = list[0] as? NSNumber else { return nil }
        return Int(exactly: number.doubleValue)
    }

    func int(_ key: String) -> Int? {
        guard let number = config[key] as? NSNumber else { return nil }
        return Int(exactly: number.doubleValue)
    }

    func string(_ key: String) -> String? {
        config[key] as? String
    }
}
