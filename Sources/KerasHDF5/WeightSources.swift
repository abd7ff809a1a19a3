import Foundation
import HDF5
import ModelIR

/// Where a layer's stored weights come from. Each source returns them in
/// the layer's own order (kernel, bias; gamma, beta, moving mean, moving variance).
protocol WeightSource {
    /// `inputShapes`: the shapes reaching the layer (batch axis excluded).
    func weights(of layer: LayerConfig, inputShapes: [[Int]]) throws -> [Tensor]
    /// The source for the layers inside a nested model layer.
    func nested(_ layer: LayerConfig) throws -> WeightSource
}

/// The order of weights within one layer, by the last component of their names.
private let roleOrder = ["kernel", "depthwise_kernel", "pointwise_kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance", "mean", "variance", "count"]

/// Reads one weight, refusing what a hostile file could use against the
/// reader: soft or external links on the way, virtual or external storage,
/// unknown filters, non-float data, too many dimensions, non-finite values.
/// `integersAllowed`: layers that store a counter among their weights
/// (Normalization's `count`) may hold integer data, read as Float.
func readWeight(_ group: HDF5Group, _ name: String, layer: String, path: String, integersAllowed: Bool = false) throws -> Tensor {
    guard try group.hasChild(name) else {
        throw KerasFileError.badWeights(path: path, layer: layer, detail: "weight '\(name)' is listed but not stored")
    }
    guard try group.allLinksAreHard(name) else {
        throw KerasFileError.unsafeContent(path: path, detail: "weight '\(name)' of layer '\(layer)' is reached through a soft or external link")
    }
    guard try group.childKind(name) == .dataset else {
        throw KerasFileError.badWeights(path: path, layer: layer, detail: "weight '\(name)' is not a dataset")
    }
    let dataset = try group.dataset(name)
    if let problem = try dataset.storageProblem() {
        throw KerasFileError.unsafeContent(path: path, detail: "weight '\(name)' of layer '\(layer)' uses \(problem)")
    }
    let valueClass = try dataset.valueClass()
    guard valueClass == .float || (integersAllowed && valueClass == .integer) else {
        throw KerasFileError.badWeights(path: path, layer: layer, detail: "weight '\(name)' does not hold floating-point values")
    }
    let shape = try dataset.shape()
    guard shape.count <= 8 else {
        throw KerasFileError.badWeights(path: path, layer: layer, detail: "weight '\(name)' has \(shape.count) dimensions")
    }
    let values = valueClass == .float ? try dataset.readFloats() : try dataset.readInt64s().map { Float($0) }
    if let bad = values.firstIndex(where: { !$0.isFinite }) {
        throw KerasFileError.badWeights(path: path, layer: layer, detail: "weight '\(name)' holds a non-finite value (\(values[bad])) at index \(bad)")
    }
    return try Tensor(shape: shape, values: values)
}

/// Opens a layer's group, refusing soft or external links.
func layerGroup(_ parent: HDF5Group, _ name: String, path: String) throws -> HDF5Group? {
    guard try parent.hasChild(name) else { return nil }
    guard try parent.allLinksAreHard(name) else {
        throw KerasFileError.unsafeContent(path: path, detail: "the group of layer '\(name)' is reached through a soft or external link")
    }
    guard try parent.childKind(name) == .group else {
        throw KerasFileError.badWeights(path: path, layer: name, detail: "its weights are not stored in a group")
    }
    return try parent.group(name)
}

/// `model.save('x.h5')`: `model_weights/<layer>` with `weight_names`, in order.
struct LegacyH5Weights: WeightSource {
    let path: String
    let group: HDF5Group

    func weights(of layer: LayerConfig, inputShapes: [[Int]]) throws -> [Tensor] {
        guard let group = try layerGroup(group, layer.name, path: path) else { return [] }
        let integers = layer.className == "Normalization"
        return try Self.weightNames(group).map { try readWeight(group, $0, layer: layer.name, path: path, integersAllowed: integers) }
    }

    func nested(_ layer: LayerConfig) throws -> WeightSource {
        guard let group = try layerGroup(group, layer.name, path: path) else { return NamedWeights(path: path, entries: []) }
        let entries = try Self.weightNames(group).map { name -> (String, Tensor) in
            (name, try readWeight(group, name, layer: layer.name, path: path))
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

    func weights(of layer: LayerConfig, inputShapes: [[Int]]) throws -> [Tensor] {
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
        guard let layersGroup, let name = groupNames[layer.name] else { return nil }
        return try layerGroup(layersGroup, name, path: path)
    }

    func weights(of layer: LayerConfig, inputShapes: [[Int]]) throws -> [Tensor] {
        guard let group = try group(for: layer), let vars = try layerGroup(group, "vars", path: path) else { return [] }
        var tensors: [Tensor] = []
        while try vars.hasChild(String(tensors.count)) {
            tensors.append(try readWeight(vars, String(tensors.count), layer: layer.name, path: path,
                                          integersAllowed: layer.className == "Normalization"))
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
