import Foundation
import ModelIR

/// Turns one Keras layer (class, config, stored weights) into an `Op`,
/// checking every option and every weight's shape.
struct LayerTranslator {
    let path: String
    let layer: LayerConfig
    /// The shape reaching the layer, batch axis excluded.
    let inputShape: [Int]
    /// The layer's weights in `weight_names` order.
    let weights: [Tensor]

    /// Layers that do nothing at inference.
    static let inferenceNoOps: Set<String> = [
        "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
        "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
    ]

    func operation() throws -> Op {
        switch layer.className {
        case "Dense": return try dense()
        case "BatchNormalization": return try batchNormalization()
        case "Activation": return .activation(try activation(layer.config["activation"]))
        case "Flatten":
            try requireWeightCount(0)
            if inputShape.count > 1, (layer.config["data_format"] as? String) == "channels_first" {
                throw unsupported("data_format 'channels_first'")
            }
            return .flatten
        case "Reshape":
            try requireWeightCount(0)
            guard let target = layer.shape("target_shape", dropBatch: false) else {
                throw KerasFileError.badConfig(path: path, detail: "Reshape '\(layer.name)' has no 'target_shape'")
            }
            return .reshape(target)
        case let name where Self.inferenceNoOps.contains(name):
            try requireWeightCount(0)
            return .identity
        case "Lambda":
            throw KerasFileError.unsupportedFeature(path: path, layer: layer.name, className: layer.className,
                                                    feature: "code stored in the file (bnkit never runs it)")
        default:
            throw KerasFileError.unsupportedLayer(path: path, layer: layer.name, className: layer.className)
        }
    }

    // MARK: - Layers

    private func dense() throws -> Op {
        guard let units = layer.int("units"), units > 0 else {
            throw KerasFileError.badConfig(path: path, detail: "Dense '\(layer.name)' has no positive 'units'")
        }
        guard inputShape.count == 1 else {
            throw unsupported("a Dense layer applied to a rank-\(inputShape.count) input \(inputShape) (add a Flatten before it)")
        }
        let useBias = layer.bool("use_bias", default: true)
        try requireWeightCount(useBias ? 2 : 1)
        let inputs = inputShape[0]
        try requireShape(weights[0], [inputs, units], role: .kernel)
        if useBias { try requireShape(weights[1], [units], role: .bias) }
        let activation = try activation(layer.config["activation"] ?? "linear")
        return .dense(try Dense(kernel: weights[0], bias: useBias ? weights[1] : nil, activation: activation))
    }

    private func batchNormalization() throws -> Op {
        let rank = inputShape.count
        // axis: an int, or a one-element list (tf.keras saves [1]); counted with the batch axis.
        let axisValue: Any? = layer.config["axis"] ?? -1
        let axes: [Int]
        if let list = axisValue as? [Any] {
            axes = list.compactMap { ($0 as? NSNumber).flatMap { Int(exactly: $0.doubleValue) } }
            guard axes.count == list.count else { throw KerasFileError.badConfig(path: path, detail: "BatchNormalization '\(layer.name)' has a non-integer axis") }
        } else if let number = axisValue as? NSNumber, let axis = Int(exactly: number.doubleValue) {
            axes = [axis]
        } else {
            throw KerasFileError.badConfig(path: path, detail: "BatchNormalization '\(layer.name)' has an invalid axis")
        }
        guard axes.count == 1, axes[0] == -1 || axes[0] == rank else {
            throw unsupported("normalizing over axis \(axes) (only the last axis, the feature/channel axis, is supported)")
        }
        if layer.bool("renorm", default: false) { throw unsupported("renorm=True") }
        guard let epsilon = layer.double("epsilon"), epsilon.isFinite, epsilon >= 0 else {
            throw KerasFileError.badConfig(path: path, detail: "BatchNormalization '\(layer.name)' has no valid 'epsilon'")
        }
        let scale = layer.bool("scale", default: true)
        let center = layer.bool("center", default: true)
        // Stored in this order: gamma (if scale), beta (if center), moving mean, moving variance.
        try requireWeightCount((scale ? 1 : 0) + (center ? 1 : 0) + 2)
        let channels = inputShape.last ?? 0
        var index = 0
        func next(_ role: WeightRole) throws -> Tensor {
            let tensor = weights[index]
            index += 1
            try requireShape(tensor, [channels], role: role)
            return tensor
        }
        let gamma = scale ? try next(.gamma) : nil
        let beta = center ? try next(.beta) : nil
        let mean = try next(.movingMean)
        let variance = try next(.movingVariance)
        return .batchNorm(try BatchNorm(gamma: gamma, beta: beta, movingMean: mean, movingVariance: variance, epsilon: epsilon))
    }

    private func activation(_ value: Any?) throws -> Activation {
        guard let name = value as? String else {
            throw unsupported("a custom or serialized activation object")
        }
        guard let activation = Activation(rawValue: name) else {
            throw unsupported("activation '\(name)'")
        }
        return activation
    }

    // MARK: - Checks

    private func unsupported(_ feature: String) -> KerasFileError {
        .unsupportedFeature(path: path, layer: layer.name, className: layer.className, feature: feature)
    }

    private func requireWeightCount(_ count: Int) throws {
        guard weights.count == count else {
            throw KerasFileError.badWeights(path: path, layer: layer.name,
                                            detail: "\(layer.className) needs \(count) weight(s) for its configuration, the file stores \(weights.count)")
        }
    }

    private func requireShape(_ tensor: Tensor, _ shape: [Int], role: WeightRole) throws {
        guard tensor.shape == shape else {
            throw KerasFileError.badWeights(path: path, layer: layer.name,
                                            detail: "weight '\(role.rawValue)' has shape \(tensor.shape), expected \(shape)")
        }
    }
}
