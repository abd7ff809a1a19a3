import HDF5
import ModelIR

/// What a Keras file carries besides the graph, kept so that a model read
/// from Keras can be written back as it came: the configs, the version
/// strings, every weight's stored name and the optimizer state.
public struct KerasProvenance: Equatable, Sendable {
    /// `model_config` JSON as stored.
    public var modelConfig: String
    /// `training_config` JSON, when the model was compiled.
    public var trainingConfig: String?
    public var kerasVersion: String?
    public var backend: String?
    /// `model_weights/layer_names`, in order.
    public var layerNames: [String]
    /// For each layer group: its weights as stored, and which node and role each holds.
    public var layerWeights: [String: [WeightEntry]]
    /// `optimizer_weights`, in stored order.
    public var optimizerWeights: [NamedArray]
    /// Weights of layers whose stored form is not a node's weights (a
    /// Normalization layer's mean, variance and count, which the graph holds
    /// as a scale and shift), kept as stored, by layer.
    public var untrackedWeights: [String: [NamedArray]] = [:]

    public struct WeightEntry: Equatable, Sendable {
        public var name: String
        public var node: String
        public var role: WeightRole

        public init(name: String, node: String, role: WeightRole) {
            self.name = name
            self.node = node
            self.role = role
        }
    }

    public init(modelConfig: String, trainingConfig: String?, kerasVersion: String?, backend: String?,
                layerNames: [String], layerWeights: [String: [WeightEntry]], optimizerWeights: [NamedArray],
                untrackedWeights: [String: [NamedArray]] = [:]) {
        self.untrackedWeights = untrackedWeights
        self.modelConfig = modelConfig
        self.trainingConfig = trainingConfig
        self.kerasVersion = kerasVersion
        self.backend = backend
        self.layerNames = layerNames
        self.layerWeights = layerWeights
        self.optimizerWeights = optimizerWeights
    }

    /// Whether `graph` still has every node and weight this provenance
    /// names, with the stored shapes: then the stored config describes it.
    public func describes(_ graph: Graph) -> Bool {
        for entries in layerWeights.values {
            for entry in entries {
                guard let node = graph.node(named: entry.node),
                      node.operation.weights.contains(where: { $0.role == entry.role }) else { return false }
            }
        }
        // Every weighted node (not a repeated call) must be named by the provenance;
        // affine nodes come from the config (Rescaling, Normalization), not from weights.
        // A folded BN removes its node or turns it into an affine without gamma: not described.
        let named = Set(layerWeights.values.flatMap { $0.map(\.node) })
        return graph.nodes.allSatisfy { node in
            if case .affine = node.operation { return true }
            return node.operation.weights.isEmpty || node.sharesWeightsWith != nil || named.contains(node.name)
        }
    }
}

extension KerasProvenance {
    /// Records names and roles for a legacy `.h5` after its graph is built.
    static func read(root: HDF5Group, weights: HDF5Group, graph: Graph, path: String) throws -> KerasProvenance {
        let layerNames = try LegacyH5Weights.chunkedStrings(weights, "layer_names")
        var layerWeights: [String: [WeightEntry]] = [:]
        var untracked: [String: [NamedArray]] = [:]
        for layer in layerNames where try weights.hasChild(layer) {
            let names = try LegacyH5Weights.weightNames(try weights.group(layer))
            if names.isEmpty { continue }
            if let node = graph.node(named: layer), !node.operation.weights.isEmpty {
                let roles = node.operation.weights.map(\.role)
                let fromConfig: Bool = { if case .affine = node.operation { true } else { false } }()
                guard roles.count == names.count, !fromConfig else {
                    untracked[layer] = try names.map { try readArray(try weights.group(layer), $0, path: path) }
                    continue
                }
                layerWeights[layer] = zip(names, roles).map { WeightEntry(name: $0, node: layer, role: $1) }
            } else {
                // A nested model: each name is `.../<inner layer>/<role>[:0]`.
                layerWeights[layer] = names.compactMap { name in
                    let components = name.split(separator: "/").map(String.init)
                    guard let last = components.last else { return nil }
                    let roleName = last.hasSuffix(":0") ? String(last.dropLast(2)) : last
                    let node = graph.nodes.first { node in
                        node.name.hasPrefix(layer + "/") && node.sharesWeightsWith == nil
                            && components.dropLast().contains(String(node.name.split(separator: "/").last ?? ""))
                    }
                    guard let node else { return nil }
                    // DepthwiseConv2D stores `depthwise_kernel`, the graph's `kernel`; SeparableConv2D keeps both names.
                    let roles = node.operation.weights.map(\.role)
                    let role = WeightRole(rawValue: roleName).flatMap { roles.contains($0) ? $0 : nil }
                        ?? (roleName == "depthwise_kernel" ? .kernel : nil)
                    return role.map { WeightEntry(name: name, node: node.name, role: $0) }
                }
            }
        }
        var optimizer: [NamedArray] = []
        if try root.hasChild("optimizer_weights"), try root.childKind("optimizer_weights") == .group {
            let group = try root.group("optimizer_weights")
            for name in try LegacyH5Weights.weightNames(group) where try group.hasChild(name) {
                optimizer.append(try readArray(group, name, path: path))
            }
        }
        return KerasProvenance(
            modelConfig: try root.stringAttribute("model_config"),
            trainingConfig: try root.hasAttribute("training_config") ? try root.stringAttribute("training_config") : nil,
            kerasVersion: try root.hasAttribute("keras_version") ? try root.stringAttribute("keras_version") : nil,
            backend: try root.hasAttribute("backend") ? try root.stringAttribute("backend") : nil,
            layerNames: layerNames, layerWeights: layerWeights, optimizerWeights: optimizer, untrackedWeights: untracked)
    }

    /// A float or integer dataset as stored (optimizer state, untracked layer weights), with the same refusals as weights.
    private static func readArray(_ group: HDF5Group, _ name: String, path: String) throws -> NamedArray {
        guard try group.allLinksAreHard(name), try group.childKind(name) == .dataset else {
            throw KerasFileError.unsafeContent(path: path, detail: "'\(name)' is a link or not a dataset")
        }
        let dataset = try group.dataset(name)
        if let problem = try dataset.storageProblem() {
            throw KerasFileError.unsafeContent(path: path, detail: "'\(name)' uses \(problem)")
        }
        let values: NamedArray.Values
        switch try dataset.valueClass() {
        case .float: values = .float32(try dataset.readFloats())
        case .integer: values = .int64(try dataset.readInt64s())
        default: throw KerasFileError.badWeights(path: path, layer: group.path, detail: "'\(name)' is neither float nor integer")
        }
        return try NamedArray(name: name, shape: try dataset.shape(), values: values)
    }
}
