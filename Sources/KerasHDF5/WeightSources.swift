import Foundation
import HDF5
import ModelIR

/// Where a layer's stored weights come from. Each source returns them in
/// the layer's own order (kernel, bias; gamma, beta, moving mean, moving variance).
protocol WeightSource {
    func weights(of layer: LayerConfig) throws -> [Tensor]
    /// The source for the layers inside a nested model layer.
    func nested(_ layer: LayerConfig) throws -> WeightSource
}

/// The order of weights within one layer, by the last component of their names.
private let roleOrder = ["kernel", "depthwise_kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance", "mean", "variance", "count"]

func readTensor(_ dataset: HDF5Dataset) throws -> Tensor {
    try Tensor(shape: try dataset.shape(), values: try dataset.readFloats())
}

/// `model.save('x.h5')`: `model_weights/<layer>` with `weight_names`, in order.
struct LegacyH5Weights: WeightSource {
    let path: String
    let group: HDF5Group

    func weights(of layer: LayerConfig) throws -> [Tensor] {
        guard try group.hasChild(layer.name) else { return [] }
        let layerGroup = try group.group(layer.name)
        return try Self.weightNames(layerGroup).map { name in
            guard try layerGroup.hasChild(name), try layerGroup.childKind(name) == .dataset else {
                throw KerasFileError.badWeights(path: path, layer: layer.name, detail: "weight '\(name)' is listed but not stored")
            }
            return try readTensor(try layerGroup.dataset(name))
        }
    }

    func nested(_ layer: LayerConfig) throws -> WeightSource {
        guard try group.hasChild(layer.name) else { return NamedWeights(path: path, entries: []) }
        let layerGroup = try group.group(layer.name)
        let entries = try Self.weightNames(layerGroup).map { name -> (String, Tensor) in
            guard try layerGroup.hasChild(name) else {
                throw KerasFileError.badWeights(path: path, layer: layer.name, detail: "weight '\(name)' is listed but not stored")
            }
            return (name, try readTensor(try layerGroup.dataset(name)))
        }
        return NamedWeights(path: path, entries: entries)
    }

    /// `weight_names`, which Keras splits into `weight_names0`, `weight_names1`, ... when large.
    static func weightNames(_ group: HDF5Group) throws -> [String] {
        try chunkedStrings(group, "weight_names")
    }

    static func chunkedStrings(_ group: HDF5Group, _ name: String) throws -> [String] {
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

/// The weights of a nested model, stored flattened under its layer's group.
/// Keras 2 and Keras 3 order them differently (Keras 3 puts all non-trainable
/// weights last), so each inner layer's weights are found by the layer's
/// name as a path component and ordered by role.
struct NamedWeights: WeightSource {
    let path: String
    let entries: [(name: String, tensor: Tensor)]

    func weights(of layer: LayerConfig) throws -> [Tensor] {
        let mine = entries.compactMap { entry -> (role: Int, tensor: Tensor)? in
            let components = entry.name.split(separator: "/").map(String.init)
            guard components.dropLast().contains(layer.name), let last = components.last else { return nil }
            let role = last.hasSuffix(":0") ? String(last.dropLast(2)) : last
            guard let order = roleOrder.firstIndex(of: role) else { return nil }
            return (order, entry.tensor)
        }
        return mine.sorted { $0.role < $1.role }.map(\.tensor)
    }

    func nested(_ layer: LayerConfig) throws -> WeightSource {
        self
    }
}

/// Keras 3 `.keras` archives: `model.weights.h5` with `layers/<name>/vars/0..n`.
/// Group names follow Keras's own naming (snake_case class name plus a
/// counter); the `vars` group's `name` attribute, when present, gives the layer.
struct ArchiveWeights: WeightSource {
    let path: String
    let layersGroup: HDF5Group?
    /// Layer name to group name, for the layers of this model level.
    let groupNames: [String: String]

    init(path: String, layersGroup: HDF5Group?, layers: [LayerConfig]) throws {
        self.path = path
        self.layersGroup = layersGroup
        var names: [String: String] = [:]
        var used: [String: Int] = [:]
        for layer in layers where layer.className != "InputLayer" {
            let base = Self.snakeCase(layer.className)
            let count = used[base, default: -1] + 1
            used[base] = count
            names[layer.name] = count == 0 ? base : "\(base)_\(count)"
        }
        // Prefer the name Keras recorded, when it did.
        if let layersGroup {
            for groupName in Set(names.values) where try layersGroup.hasChild("\(groupName)/vars") {
                let vars = try layersGroup.group("\(groupName)/vars")
                if try vars.hasAttribute("name"), let layerName = try? vars.stringAttribute("name"), layers.contains(where: { $0.name == layerName }) {
                    names[layerName] = groupName
                }
            }
        }
        groupNames = names
    }

    /// Keras's `to_snake_case`: `BatchNormalization` → `batch_normalization`, `ReLU` → `re_lu`.
    static func snakeCase(_ name: String) -> String {
        var text = name
        for (pattern, template) in [("\\W+", ""), ("(.)([A-Z][a-z]+)", "$1_$2"), ("([a-z])([A-Z])", "$1_$2")] {
            let regex = try! NSRegularExpression(pattern: pattern)
            text = regex.stringByReplacingMatches(in: text, range: NSRange(text.startIndex..., in: text), withTemplate: template)
        }
        return text.lowercased()
    }

    private func group(for layer: LayerConfig) throws -> HDF5Group? {
        guard let layersGroup, let name = groupNames[layer.name], try layersGroup.hasChild(name) else { return nil }
        return try layersGroup.group(name)
    }

    func weights(of layer: LayerConfig) throws -> [Tensor] {
        guard let group = try group(for: layer), try group.hasChild("vars") else { return [] }
        let vars = try group.group("vars")
        var tensors: [Tensor] = []
        while try vars.hasChild(String(tensors.count)) {
            tensors.append(try readTensor(try vars.dataset(String(tensors.count))))
        }
        return tensors
    }

    func nested(_ layer: LayerConfig) throws -> WeightSource {
        let inner = try ModelConfigParser(path: path).parse(entry: layer.entry, depth: 1)
        let group = try group(for: layer)
        let layersGroup = try group.flatMap { try $0.hasChild("layers") ? try $0.group("layers") : nil }
        return try ArchiveWeights(path: path, layersGroup: layersGroup, layers: inner.layers)
    }
}
