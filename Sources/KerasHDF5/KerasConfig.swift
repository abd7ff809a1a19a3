import Foundation
import ModelIR

/// One layer of a Keras `model_config`, as bnkit needs it.
struct LayerConfig {
    let className: String
    let name: String
    let config: [String: Any]
    /// Names of the layers whose outputs this layer reads (Functional models).
    let inboundLayers: [String]
}

/// The parsed architecture: layers in file order, the input shape and the outputs.
struct ModelConfig {
    let name: String
    let layers: [LayerConfig]
    /// Functional models: the layers named in `output_layers`; Sequential: empty.
    let outputLayers: [String]
    let isSequential: Bool
    /// Keras 3 Sequential models without an InputLayer: `build_config.input_shape` (batch axis included).
    var buildInputShape: [Any]? = nil
}

/// Parses the JSON in `model_config` (Keras 2 and Keras 3 forms).
struct ModelConfigParser {
    let path: String

    /// Nesting and size caps: a model config deeper or larger than this is refused.
    static let maxBytes = 64 << 20

    func parse(_ json: String) throws -> ModelConfig {
        guard json.utf8.count <= Self.maxBytes else {
            throw KerasFileError.badConfig(path: path, detail: "larger than \(Self.maxBytes) bytes")
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(json.utf8))
        } catch {
            throw KerasFileError.badConfig(path: path, detail: "not JSON (\(error.localizedDescription))")
        }
        guard let root = object as? [String: Any], let className = root["class_name"] as? String else {
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
        if let dict = config as? [String: Any] {
            guard let list = dict["layers"] as? [Any] else {
                throw KerasFileError.badConfig(path: path, detail: "Sequential config has no 'layers' list")
            }
            layerList = list
            name = dict["name"] as? String ?? name
        } else if let list = config as? [Any] {
            layerList = list
        } else {
            throw KerasFileError.badConfig(path: path, detail: "Sequential config is neither an object nor a list")
        }
        let layers = try layerList.enumerated().map { index, entry in try layer(entry, index: index, inbound: []) }
        let build = ((config as? [String: Any])?["build_config"] as? [String: Any])?["input_shape"] as? [Any]
        return ModelConfig(name: name, layers: layers, outputLayers: [], isSequential: true, buildInputShape: build)
    }

    private func functional(_ config: Any?) throws -> ModelConfig {
        guard let dict = config as? [String: Any], let layerList = dict["layers"] as? [Any] else {
            throw KerasFileError.badConfig(path: path, detail: "Functional config has no 'layers' list")
        }
        var layers: [LayerConfig] = []
        for (index, entry) in layerList.enumerated() {
            guard let layerDict = entry as? [String: Any] else {
                throw KerasFileError.badConfig(path: path, detail: "layer \(index) is not an object")
            }
            let nodes = layerDict["inbound_nodes"] as? [Any] ?? []
            let layerName = (layerDict["config"] as? [String: Any])?["name"] as? String ?? layerDict["name"] as? String ?? "#\(index)"
            guard nodes.count <= 1 else {
                throw KerasFileError.unsupportedFeature(path: path, layer: layerName,
                                                        className: layerDict["class_name"] as? String ?? "?",
                                                        feature: "calling a layer more than once (shared layers)")
            }
            var inbound: [String] = []
            if let node = nodes.first { collectHistory(node, into: &inbound) }
            layers.append(try layer(entry, index: index, inbound: inbound))
        }
        let outputs = outputNames(dict["output_layers"])
        guard !outputs.isEmpty else {
            throw KerasFileError.badConfig(path: path, detail: "Functional config has no 'output_layers'")
        }
        return ModelConfig(name: dict["name"] as? String ?? "model", layers: layers, outputLayers: outputs, isSequential: false)
    }

    /// Keras 2: `[["name", 0, 0, {}], ...]`; Keras 3: `{"args": [{"class_name":
    /// "__keras_tensor__", "config": {"keras_history": ["name", 0, 0]}}], ...}`.
    private func collectHistory(_ value: Any, into names: inout [String]) {
        if let dict = value as? [String: Any] {
            if let config = dict["config"] as? [String: Any], let history = config["keras_history"] as? [Any],
               let name = history.first as? String {
                names.append(name)
                return
            }
            if let args = dict["args"] { collectHistory(args, into: &names) }
            return
        }
        if let list = value as? [Any] {
            if let name = list.first as? String, list.count >= 3, list[1] is NSNumber {
                names.append(name)
                return
            }
            for element in list { collectHistory(element, into: &names) }
        }
    }

    private func outputNames(_ value: Any?) -> [String] {
        guard let list = value as? [Any] else { return [] }
        if let name = list.first as? String { return [name] }
        return list.compactMap { ($0 as? [Any])?.first as? String }
    }

    private func layer(_ entry: Any, index: Int, inbound: [String]) throws -> LayerConfig {
        guard let dict = entry as? [String: Any], let className = dict["class_name"] as? String else {
            throw KerasFileError.badConfig(path: path, detail: "layer \(index) has no 'class_name'")
        }
        guard let config = dict["config"] as? [String: Any] else {
            throw KerasFileError.badConfig(path: path, detail: "layer \(index) (\(className)) has no 'config'")
        }
        guard let name = config["name"] as? String ?? dict["name"] as? String else {
            throw KerasFileError.badConfig(path: path, detail: "layer \(index) (\(className)) has no name")
        }
        return LayerConfig(className: className, name: name, config: config, inboundLayers: inbound)
    }
}

extension LayerConfig {
    /// A fixed shape from a JSON list such as `[null, 784]`; nil entries are refused.
    func shape(_ key: String, dropBatch: Bool) -> [Int]? {
        guard let list = config[key] as? [Any] else { return nil }
        let dims = dropBatch ? Array(list.dropFirst()) : list
        var shape: [Int] = []
        for dim in dims {
            guard let number = dim as? NSNumber, number.doubleValue == number.doubleValue.rounded(),
                  let value = Int(exactly: number.doubleValue) else { return nil }
            shape.append(value)
        }
        return shape
    }

    func bool(_ key: String, default value: Bool) -> Bool {
        (config[key] as? NSNumber)?.boolValue ?? value
    }

    func double(_ key: String) -> Double? {
        (config[key] as? NSNumber)?.doubleValue
    }

    func int(_ key: String) -> Int? {
        guard let number = config[key] as? NSNumber else { return nil }
        return Int(exactly: number.doubleValue)
    }
}
