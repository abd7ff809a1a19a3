import Foundation
import HDF5
import ModelIR

/// Writes the classic Keras HDF5 layout (`model.save('x.h5')`): root
/// attributes `keras_version`, `backend`, `model_config` (and
/// `training_config`), `model_weights` with `layer_names` and per-layer
/// `weight_names`, and `optimizer_weights` when carried over.
///
/// With provenance that still describes the graph (a model read from `.h5`,
/// weights possibly changed), everything is written back as it came: the
/// stored configs, weight names, training config and optimizer state. Any
/// other graph (folded, or built in code) gets a generated Functional config
/// in the tf_keras form, which Keras 2 and Keras 3 both load; training config
/// and optimizer state are then dropped, and the returned notices say so.
public enum KerasModelWriter {
    /// Writes `graph` to `path` (replacing it; callers wanting atomicity write
    /// to a temporary path and rename). Returns notices for the user. Safe to call
    /// from several threads (libhdf5 calls are serialized by one lock).
    @discardableResult
    public static func write(_ graph: Graph, provenance: KerasProvenance?, to path: String) throws -> [String] {
        try withHDF5Lock { try writeLocked(graph, provenance: provenance, to: path) }
    }

    private static func writeLocked(_ graph: Graph, provenance: KerasProvenance?, to path: String) throws -> [String] {
        do {
            let file = try HDF5File.create(path)
            let root = try file.root()
            var notices: [String] = []
            if let provenance, provenance.describes(graph) {
                try writeFaithful(graph, provenance, root: root)
            } else {
                if let provenance {
                    if provenance.trainingConfig != nil || !provenance.optimizerWeights.isEmpty {
                        notices.append("the model's structure changed (folded or edited): its training_config and optimizer state are not written")
                    }
                }
                try writeGenerated(graph, root: root, version: provenance?.kerasVersion)
            }
            try file.flush()
            return notices
        } catch let error as HDF5Error {
            throw KerasFileError.hdf5(path: path, error)
        }
    }

    // MARK: - As it came

    private static func writeFaithful(_ graph: Graph, _ p: KerasProvenance, root: HDF5Group) throws {
        if let version = p.kerasVersion { try root.setStringAttribute("keras_version", version) }
        if let backend = p.backend { try root.setStringAttribute("backend", backend) }
        try root.setStringAttribute("model_config", p.modelConfig)
        if let training = p.trainingConfig { try root.setStringAttribute("training_config", training) }
        let weights = try root.createGroup("model_weights")
        try weights.setStringArrayAttribute("layer_names", p.layerNames)
        if let version = p.kerasVersion { try weights.setStringAttribute("keras_version", version) }
        if let backend = p.backend { try weights.setStringAttribute("backend", backend) }
        for layer in p.layerNames {
            let group = try weights.createGroup(layer)
            if let arrays = p.untrackedWeights[layer] {
                try group.setStringArrayAttribute("weight_names", arrays.map(\.name))
                try writeArrays(arrays, in: group)
                continue
            }
            let entries = p.layerWeights[layer] ?? []
            try group.setStringArrayAttribute("weight_names", entries.map(\.name))
            for entry in entries {
                guard let tensor = graph.node(named: entry.node)?.operation.weights.first(where: { $0.role == entry.role })?.tensor else {
                    continue  // `describes` checked this
                }
                try group.createFloatDataset(entry.name, shape: tensor.shape, values: tensor.values)
            }
        }
        if !p.optimizerWeights.isEmpty {
            let optimizer = try root.createGroup("optimizer_weights")
            try optimizer.setStringArrayAttribute("weight_names", p.optimizerWeights.map(\.name))
            try writeArrays(p.optimizerWeights, in: optimizer)
        }
    }

    private static func writeArrays(_ arrays: [NamedArray], in group: HDF5Group) throws {
        for array in arrays {
            switch array.values {
            case .float32(let values): try group.createFloatDataset(array.name, shape: array.shape, values: values)
            case .int64(let values): try group.createInt64Dataset(array.name, shape: array.shape, values: values)
            }
        }
    }

    // MARK: - Generated

    private static func writeGenerated(_ graph: Graph, root: HDF5Group, version: String?) throws {
        let layers = try KerasConfigGenerator(graph: graph).layers()
        let config: [String: Any] = [
            "class_name": "Functional",
            "config": [
                "name": KerasConfigGenerator.sanitize(graph.name),
                "layers": layers.map(\.json),
                "input_layers": layers.filter { $0.className == "InputLayer" }.map { [$0.name, 0, 0] },
                "output_layers": try graph.outputs.map { try KerasConfigGenerator(graph: graph).reference($0).prefix(3).map { $0 } },
            ] as [String: Any],
        ]
        let json = String(decoding: try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]), as: UTF8.self)
        // The generated config is in the tf_keras (Keras 2) form.
        let kerasVersion = version.flatMap { $0.hasPrefix("2.") ? $0 : nil } ?? "2.15.0"
        try root.setStringAttribute("keras_version", kerasVersion)
        try root.setStringAttribute("backend", "tensorflow")
        try root.setStringAttribute("model_config", json)
        let weights = try root.createGroup("model_weights")
        try weights.setStringArrayAttribute("layer_names", layers.map(\.name))
        try weights.setStringAttribute("keras_version", kerasVersion)
        try weights.setStringAttribute("backend", "tensorflow")
        for layer in layers {
            let group = try weights.createGroup(layer.name)
            let names = layer.weights.map { "\(layer.name)/\($0.name):0" }
            try group.setStringArrayAttribute("weight_names", names)
            for (name, weight) in zip(names, layer.weights) {
                try group.createFloatDataset(name, shape: weight.tensor.shape, values: weight.tensor.values)
            }
        }
    }
}

/// One generated Keras layer.
struct GeneratedLayer {
    let className: String
    let name: String
    let json: [String: Any]
    let weights: [(name: String, tensor: Tensor)]
}

/// Builds a tf_keras-form Functional config from a graph.
struct KerasConfigGenerator {
    let graph: Graph

    /// Keras layer names may not contain `/`; nested and repeated-call names do.
    static func sanitize(_ name: String) -> String {
        String(name.map { $0 == "/" || $0 == "#" || $0 == " " ? "_" : $0 })
    }

    /// The layer that holds a node's weights and the call index of the node.
    private func layerAndCall(_ nodeName: String) throws -> (layer: String, call: Int) {
        guard let node = graph.node(named: nodeName) else { throw ModelError.unknownOutput(nodeName) }
        guard let owner = node.sharesWeightsWith else { return (Self.sanitize(nodeName), 0) }
        let calls = graph.nodes.filter { $0.sharesWeightsWith == owner }.map(\.name)
        return (Self.sanitize(owner), (calls.firstIndex(of: nodeName) ?? 0) + 1)
    }

    /// `[layer, call, 0, {}]` for the tensor a node produces.
    func reference(_ nodeName: String) throws -> [Any] {
        let (layer, call) = try layerAndCall(nodeName)
        return [layer, call, 0, [String: Any]()]
    }

    func layers() throws -> [GeneratedLayer] {
        var result: [GeneratedLayer] = []
        var index: [String: Int] = [:]
        let shapes = try graph.inferShapes()
        for node in graph.nodes {
            let inbound = try node.inputs.map { try reference($0) }
            if let owner = node.sharesWeightsWith {
                // A repeated call: one more inbound node on the owner's layer.
                guard let position = index[Self.sanitize(owner)] else { throw ModelError.unknownInput(node: node.name, input: owner) }
                let layer = result[position]
                var json = layer.json
                json["inbound_nodes"] = (json["inbound_nodes"] as? [Any] ?? []) + [inbound]
                result[position] = GeneratedLayer(className: layer.className, name: layer.name, json: json, weights: layer.weights)
                continue
            }
            let name = Self.sanitize(node.name)
            func add(_ className: String, _ layerName: String, _ config: [String: Any], _ weights: [(name: String, tensor: Tensor)],
                     inbound: [Any]) {
                var fullConfig = config
                fullConfig["name"] = layerName
                fullConfig["dtype"] = "float32"
                if className != "InputLayer" { fullConfig["trainable"] = true }
                let json: [String: Any] = [
                    "class_name": className, "name": layerName, "config": fullConfig,
                    "inbound_nodes": className == "InputLayer" ? [] : [inbound],
                ]
                index[layerName] = result.count
                result.append(GeneratedLayer(className: className, name: layerName, json: json, weights: weights))
            }
            // A layer normalization over several axes: Keras 3 drops a multi-axis `axis` when it reads
            // a tf_keras-form file. Over the trailing axes it is the same as Reshape to one axis →
            // LayerNormalization(-1) with the parameters flattened → Reshape back, which both read.
            if case .layerNorm(let ln) = node.operation, ln.axes.count > 1, let shape = node.inputs.first.flatMap({ shapes[$0] }) {
                guard ln.axes == Array((shape.count - ln.axes.count)..<shape.count) else {
                    throw KerasFileError.unsupportedFeature(path: "", layer: node.name, className: "LayerNormalization",
                                                            feature: "writing a normalization over the non-trailing axes \(ln.axes.map { $0 + 1 })")
                }
                let kept = Array(shape.prefix(shape.count - ln.axes.count)), inner = ln.axes.map { shape[$0] }.reduce(1, *)
                func ref(_ layer: String) -> [Any] { [layer, 0, 0, [String: Any]()] }
                var weights: [(name: String, tensor: Tensor)] = []
                if let g = ln.gamma { weights.append(("gamma", try Tensor(shape: [inner], values: g.values))) }
                if let b = ln.beta { weights.append(("beta", try Tensor(shape: [inner], values: b.values))) }
                add("Reshape", name + "_flat", ["target_shape": kept + [inner]], [], inbound: inbound)
                add("LayerNormalization", name + "_norm", ["axis": -1, "epsilon": ln.epsilon, "center": ln.beta != nil, "scale": ln.gamma != nil],
                    weights, inbound: [ref(name + "_flat")])
                add("Reshape", name, ["target_shape": shape], [], inbound: [ref(name + "_norm")])
                continue
            }
            // hard_sigmoid means 0.2x + 0.5 in Keras 2 and x/6 + 0.5 in Keras 3: write it as
            // Rescaling(slope, 0.5) + ReLU(max_value=1), which both read the same way. hard_silu
            // (Keras 3 only) becomes x · ReLU6(x + 3) · (1/6) in layers both versions have.
            var expanded: Activation?
            var described = node
            switch node.operation {
            case .activation(let activation) where activation == .hardSwish || activation.name == "hard_sigmoid":
                expanded = activation
                described.operation = .identity
            case .dense, .conv2d, .depthwiseConv2d, .separableConv2d, .conv2dTranspose:
                if let activation = node.operation.fusedActivation, activation == .hardSwish || activation.name == "hard_sigmoid" {
                    guard !graph.nodes.contains(where: { $0.sharesWeightsWith == node.name }) else {
                        throw KerasFileError.unsupportedFeature(path: "", layer: node.name, className: node.operation.kind,
                                                                feature: "writing a shared layer with a fused \(activation.name)")
                    }
                    expanded = activation
                    described.operation = try node.operation.replacingActivation(.linear)
                }
            default: break
            }
            guard let expanded else {
                let (className, config, weights) = try describe(node, inputShape: node.inputs.first.flatMap { shapes[$0] })
                add(className, name, config, weights, inbound: inbound)
                continue
            }
            var previous = inbound
            if described.operation != .identity {
                let (className, config, weights) = try describe(described, inputShape: node.inputs.first.flatMap { shapes[$0] })
                add(className, name + "_linear", config, weights, inbound: inbound)
                previous = [[name + "_linear", 0, 0, [String: Any]()]]
            }
            func ref(_ layer: String) -> [Any] { [layer, 0, 0, [String: Any]()] }
            if case .hardSigmoid(let slope) = expanded {
                add("Rescaling", name + "_hard_sigmoid", ["scale": Double(slope), "offset": 0.5], [], inbound: previous)
                add("ReLU", name, ["max_value": 1.0, "negative_slope": 0.0, "threshold": 0.0], [], inbound: [ref(name + "_hard_sigmoid")])
            } else {
                add("Rescaling", name + "_plus_3", ["scale": 1.0, "offset": 3.0], [], inbound: previous)
                add("ReLU", name + "_relu6", ["max_value": 6.0, "negative_slope": 0.0, "threshold": 0.0], [], inbound: [ref(name + "_plus_3")])
                add("Rescaling", name + "_gate", ["scale": 1.0 / 6.0, "offset": 0.0], [], inbound: [ref(name + "_relu6")])
                add("Multiply", name, [:], [], inbound: previous + [ref(name + "_gate")])
            }
        }
        return result
    }

    private func activationConfig(_ activation: Activation, node: String) throws -> String {
        switch activation {
        case .elu(let alpha) where alpha == 1: return "elu"
        case .gelu(approximate: false): return "gelu"
        case .gelu(approximate: true):
            throw KerasFileError.unsupportedFeature(path: "", layer: node, className: "activation",
                                                    feature: "writing the tanh approximation of gelu (Keras names no such activation)")
        default:
            if Activation.simple[activation.name] == activation { return activation.name }
            throw KerasFileError.unsupportedFeature(path: "", layer: node, className: "activation",
                                                    feature: "writing \(activation.name) as a fused Keras activation")
        }
    }

    private func describe(_ node: Node, inputShape: [Int]?) throws -> (String, [String: Any], [(name: String, tensor: Tensor)]) {
        let oneDimensional = inputShape?.count == 2
        func window(_ w: Window) -> [String: Any] {
            ["strides": w.strides, "padding": w.padding.rawValue, "dilation_rate": w.dilation, "data_format": "channels_last"]
        }
        /// Window options, 1-D layers with single values (Keras's Conv1D form).
        func spatial(_ w: Window, oneDimensional: Bool) -> [String: Any] {
            guard oneDimensional else { return window(w).merging(["kernel_size": w.size]) { $1 } }
            return ["strides": [w.strides[1]], "padding": w.padding.rawValue, "dilation_rate": [w.dilation[1]], "kernel_size": [w.size[1]],
                    "data_format": "channels_last"]
        }
        switch node.operation {
        case .input(let shape):
            return ("InputLayer", ["batch_input_shape": [NSNull()] + shape.map { $0 as Any }, "sparse": false, "ragged": false], [])
        case .dense(let d):
            return ("Dense", ["units": d.units, "activation": try activationConfig(d.activation, node: node.name), "use_bias": d.bias != nil],
                    [("kernel", d.kernel)] + (d.bias.map { [("bias", $0)] } ?? []))
        case .conv2d(let c):
            var config = spatial(c.window, oneDimensional: c.isOneDimensional)
            config["filters"] = c.outputChannels
            config["groups"] = c.groups
            config["activation"] = try activationConfig(c.activation, node: node.name)
            config["use_bias"] = c.bias != nil
            return (c.isOneDimensional ? "Conv1D" : "Conv2D", config, [("kernel", c.kernel)] + (c.bias.map { [("bias", $0)] } ?? []))
        case .depthwiseConv2d(let c):
            var config = spatial(c.window, oneDimensional: c.isOneDimensional)
            config["depth_multiplier"] = c.depthMultiplier
            config["activation"] = try activationConfig(c.activation, node: node.name)
            config["use_bias"] = c.bias != nil
            return (c.isOneDimensional ? "DepthwiseConv1D" : "DepthwiseConv2D", config, [("depthwise_kernel", c.kernel)] + (c.bias.map { [("bias", $0)] } ?? []))
        case .batchNorm(let bn):
            let config: [String: Any] = ["axis": -1, "momentum": 0.99, "epsilon": bn.epsilon, "center": bn.beta != nil, "scale": bn.gamma != nil]
            var weights: [(name: String, tensor: Tensor)] = []
            if let g = bn.gamma { weights.append(("gamma", g)) }
            if let b = bn.beta { weights.append(("beta", b)) }
            weights += [("moving_mean", bn.movingMean), ("moving_variance", bn.movingVariance)]
            return ("BatchNormalization", config, weights)
        case .affine(let a):
            return ("Rescaling", ["scale": a.scale.values.map(Double.init), "offset": a.shift.values.map(Double.init)], [])
        case .activation(let activation):
            switch activation {
            case .elu(let alpha): return ("ELU", ["alpha": Double(alpha)], [])
            case .leakyRelu(let alpha): return ("LeakyReLU", ["alpha": Double(alpha)], [])
            case let .clippedRelu(maxValue, slope, threshold):
                return ("ReLU", ["max_value": maxValue.map { Double($0) as Any } ?? NSNull(), "negative_slope": Double(slope), "threshold": Double(threshold)], [])
            default:
                return ("Activation", ["activation": try activationConfig(activation, node: node.name)], [])
            }
        case .pool2d(let p):
            var config = spatial(p.window, oneDimensional: oneDimensional)
            config.removeValue(forKey: "dilation_rate")
            config["pool_size"] = config.removeValue(forKey: "kernel_size")
            let name = (p.kind == .max ? "MaxPooling" : "AveragePooling") + (oneDimensional ? "1D" : "2D")
            return (name, config, [])
        case .globalPool(let kind, let keepDims):
            let name = (kind == .max ? "GlobalMaxPooling" : "GlobalAveragePooling") + (oneDimensional ? "1D" : "2D")
            return (name, ["data_format": "channels_last", "keepdims": keepDims], [])
        case .zeroPadding2d(let pads):
            if oneDimensional { return ("ZeroPadding1D", ["padding": [pads[2], pads[3]]], []) }
            return ("ZeroPadding2D", ["padding": [[pads[0], pads[1]], [pads[2], pads[3]]], "data_format": "channels_last"], [])
        case .separableConv2d(let c):
            var config = spatial(c.window, oneDimensional: c.isOneDimensional)
            config["filters"] = c.outputChannels
            config["depth_multiplier"] = c.depthMultiplier
            config["activation"] = try activationConfig(c.activation, node: node.name)
            config["use_bias"] = c.bias != nil
            return (c.isOneDimensional ? "SeparableConv1D" : "SeparableConv2D", config,
                    [("depthwise_kernel", c.depthwiseKernel), ("pointwise_kernel", c.pointwiseKernel)] + (c.bias.map { [("bias", $0)] } ?? []))
        case .conv2dTranspose(let c):
            let config: [String: Any] = ["filters": c.outputChannels, "kernel_size": c.size, "strides": c.strides, "padding": c.padding.rawValue,
                                         "output_padding": NSNull(), "dilation_rate": [1, 1], "data_format": "channels_last",
                                         "activation": try activationConfig(c.activation, node: node.name), "use_bias": c.bias != nil]
            return ("Conv2DTranspose", config, [("kernel", c.kernel)] + (c.bias.map { [("bias", $0)] } ?? []))
        case .layerNorm(let ln):
            var weights: [(name: String, tensor: Tensor)] = []
            if let g = ln.gamma { weights.append(("gamma", g)) }
            if let b = ln.beta { weights.append(("beta", b)) }
            return ("LayerNormalization", ["axis": ln.axes.map { $0 + 1 }, "epsilon": ln.epsilon, "center": ln.beta != nil, "scale": ln.gamma != nil],
                    weights)
        case .upsampling(let up):
            if oneDimensional { return ("UpSampling1D", ["size": up.factors[1]], []) }
            return ("UpSampling2D", ["size": up.factors, "interpolation": up.interpolation.rawValue, "data_format": "channels_last"], [])
        case .transpose(let perm):
            return ("Permute", ["dims": perm.map { $0 + 1 }], [])
        case .pad2d(let pads, let value):
            guard value == 0 else {
                throw KerasFileError.unsupportedFeature(path: "", layer: node.name, className: "pad2d",
                                                        feature: "writing a padding with \(value) (Keras pads with zeros only)")
            }
            if oneDimensional { return ("ZeroPadding1D", ["padding": [pads[2], pads[3]]], []) }
            return ("ZeroPadding2D", ["padding": [[pads[0], pads[1]], [pads[2], pads[3]]], "data_format": "channels_last"], [])
        case .cropping2d(let crops):
            if oneDimensional { return ("Cropping1D", ["cropping": [crops[2], crops[3]]], []) }
            return ("Cropping2D", ["cropping": [[crops[0], crops[1]], [crops[2], crops[3]]], "data_format": "channels_last"], [])
        case .merge(let kind):
            let names: [MergeKind: String] = [.subtract: "Subtract", .maximum: "Maximum", .minimum: "Minimum", .average: "Average"]
            return (names[kind]!, [:], [])
        case .add: return ("Add", [:], [])
        case .multiply: return ("Multiply", [:], [])
        case .concatenate(let axis): return ("Concatenate", ["axis": axis + 1], [])
        case .slice:
            throw KerasFileError.unsupportedFeature(path: "", layer: node.name, className: "slice",
                                                    feature: "writing a slice of an axis (Keras has no such layer; write .bin or .onnx)")
        case .flatten: return ("Flatten", ["data_format": "channels_last"], [])
        case .reshape(let shape): return ("Reshape", ["target_shape": shape], [])
        case .identity: return ("Activation", ["activation": "linear"], [])
        }
    }
}
