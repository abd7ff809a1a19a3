import Foundation
import ModelIR

/// Turns one Keras layer (class, config, stored weights) into an `Op`,
/// checking every option and every weight's shape. channels_last only:
/// channels_first is refused with a message.
struct LayerTranslator {
    let path: String
    let layer: LayerConfig
    /// The shapes reaching the layer, batch axis excluded.
    let inputShapes: [[Int]]
    /// The layer's weights in their stored order.
    let weights: [Tensor]
    /// `keras_version` of the file: activations whose definition changed
    /// between Keras 2 and 3 (hard_sigmoid) follow the producer.
    let kerasVersion: String?

    /// Layers that do nothing at inference.
    static let inferenceNoOps: Set<String> = [
        "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
        "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
    ]

    private var inputShape: [Int] { inputShapes[0] }

    func operation() throws -> Op {
        if layer.className != "Add" && layer.className != "Multiply" && layer.className != "Concatenate" {
            guard inputShapes.count == 1 else { throw unsupported("\(inputShapes.count) inputs") }
        } else if inputShapes.count < 2 {
            throw unsupported("\(inputShapes.count) input(s) (at least 2 are needed)")
        }
        switch layer.className {
        case "Dense": return try dense()
        case "Conv2D", "Convolution2D": return try conv2d()
        case "DepthwiseConv2D": return try depthwise()
        case "BatchNormalization": return try batchNormalization()
        case "Activation":
            try requireWeightCount(0)
            return .activation(try activation(layer.config["activation"]))
        case "ReLU":
            try requireWeightCount(0)
            let maxValue = layer.double("max_value").map { Float($0) }
            let slope = Float(layer.double("negative_slope") ?? 0), threshold = Float(layer.double("threshold") ?? 0)
            if slope == 0 && threshold == 0 {
                if maxValue == nil { return .activation(.relu) }
                if maxValue == 6 { return .activation(.relu6) }
            }
            return .activation(.clippedRelu(maxValue: maxValue, negativeSlope: slope, threshold: threshold))
        case "LeakyReLU":
            try requireWeightCount(0)
            return .activation(.leakyRelu(alpha: Float(layer.double("negative_slope") ?? layer.double("alpha") ?? 0.3)))
        case "ELU":
            try requireWeightCount(0)
            return .activation(.elu(alpha: Float(layer.double("alpha") ?? 1)))
        case "Softmax":
            try requireWeightCount(0)
            try requireLastAxis(layer.config["axis"] ?? -1, what: "softmax")
            return .activation(.softmax)
        case "MaxPooling2D", "AveragePooling2D", "MaxPool2D", "AvgPool2D": return try pooling()
        case "GlobalAveragePooling2D", "GlobalMaxPooling2D", "GlobalAvgPool2D", "GlobalMaxPool2D":
            try requireWeightCount(0)
            try requireChannelsLast()
            try requireRank(3)
            let kind: Pool2D.Kind = layer.className.contains("Max") ? .max : .average
            return .globalPool(kind: kind, keepDims: layer.bool("keepdims", default: false))
        case "ZeroPadding2D": return try zeroPadding()
        case "Flatten":
            try requireWeightCount(0)
            if inputShape.count > 1 { try requireChannelsLast() }
            return .flatten
        case "Reshape":
            try requireWeightCount(0)
            guard let list = layer.config["target_shape"] as? [Any] else {
                throw KerasFileError.badConfig(path: path, detail: "Reshape '\(layer.name)' has no 'target_shape'")
            }
            let target = list.compactMap { ($0 as? NSNumber).flatMap { Int(exactly: $0.doubleValue) } }
            guard target.count == list.count else { throw KerasFileError.badConfig(path: path, detail: "Reshape '\(layer.name)' has an invalid 'target_shape'") }
            return .reshape(target)
        case "Add":
            try requireWeightCount(0)
            return .add
        case "Multiply":
            try requireWeightCount(0)
            return .multiply
        case "Concatenate":
            try requireWeightCount(0)
            let axis = layer.int("axis") ?? -1
            let rank = inputShape.count
            let normalized = axis < 0 ? rank + axis : axis - 1
            guard normalized >= 0, normalized < rank else { throw unsupported("concatenation along axis \(axis)") }
            return .concatenate(axis: normalized)
        case "Rescaling": return try rescaling()
        case "Normalization": return try normalization()
        case let name where Self.inferenceNoOps.contains(name):
            try requireWeightCount(0)
            return .identity
        case "Lambda":
            throw unsupported("code stored in the file (bnkit never runs it)")
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
        try requireShape(weights[0], [inputShape[0], units], role: .kernel)
        if useBias { try requireShape(weights[1], [units], role: .bias) }
        let activation = try activation(layer.config["activation"] ?? "linear")
        return .dense(try Dense(kernel: weights[0], bias: useBias ? weights[1] : nil, activation: activation))
    }

    /// kernel_size, strides, dilation_rate and padding, checked.
    private func window() throws -> (size: [Int], strides: [Int], dilation: [Int], padding: Padding) {
        try requireChannelsLast()
        try requireRank(3)
        guard let size = layer.pair("kernel_size"), let strides = layer.pair("strides", default: [1, 1]),
              let dilation = layer.pair("dilation_rate", default: [1, 1]) else {
            throw KerasFileError.badConfig(path: path, detail: "\(layer.className) '\(layer.name)' has an invalid kernel_size, strides or dilation_rate")
        }
        let padding = try self.padding()
        if strides != [1, 1] && dilation != [1, 1] { throw unsupported("strides \(strides) together with dilation_rate \(dilation)") }
        return (size, strides, dilation, padding)
    }

    private func padding() throws -> Padding {
        let name = (layer.string("padding") ?? "valid").lowercased()
        guard let padding = Padding(rawValue: name) else { throw unsupported("padding '\(name)'") }
        return padding
    }

    private func conv2d() throws -> Op {
        let (size, strides, dilation, padding) = try window()
        guard let filters = layer.int("filters"), filters > 0 else {
            throw KerasFileError.badConfig(path: path, detail: "Conv2D '\(layer.name)' has no positive 'filters'")
        }
        let groups = layer.int("groups") ?? 1
        let channels = inputShape[2]
        guard groups >= 1, channels % groups == 0, filters % groups == 0 else {
            throw KerasFileError.badConfig(path: path, detail: "Conv2D '\(layer.name)': groups \(groups) does not divide \(channels) input and \(filters) output channels")
        }
        let useBias = layer.bool("use_bias", default: true)
        try requireWeightCount(useBias ? 2 : 1)
        try requireShape(weights[0], size + [channels / groups, filters], role: .kernel)
        if useBias { try requireShape(weights[1], [filters], role: .bias) }
        return .conv2d(try Conv2D(kernel: weights[0], bias: useBias ? weights[1] : nil, strides: strides, dilation: dilation,
                                  padding: padding, groups: groups, activation: try activation(layer.config["activation"] ?? "linear")))
    }

    private func depthwise() throws -> Op {
        let (size, strides, dilation, padding) = try window()
        let multiplier = layer.int("depth_multiplier") ?? 1
        guard multiplier >= 1 else { throw KerasFileError.badConfig(path: path, detail: "DepthwiseConv2D '\(layer.name)' has an invalid depth_multiplier") }
        let channels = inputShape[2]
        let useBias = layer.bool("use_bias", default: true)
        try requireWeightCount(useBias ? 2 : 1)
        try requireShape(weights[0], size + [channels, multiplier], role: .kernel)
        if useBias { try requireShape(weights[1], [channels * multiplier], role: .bias) }
        return .depthwiseConv2d(try DepthwiseConv2D(kernel: weights[0], bias: useBias ? weights[1] : nil, strides: strides,
                                                    dilation: dilation, padding: padding,
                                                    activation: try activation(layer.config["activation"] ?? "linear")))
    }

    private func pooling() throws -> Op {
        try requireWeightCount(0)
        try requireChannelsLast()
        try requireRank(3)
        guard let size = layer.pair("pool_size", default: [2, 2]) else {
            throw KerasFileError.badConfig(path: path, detail: "\(layer.className) '\(layer.name)' has an invalid pool_size")
        }
        // strides default to pool_size (null in the config means the same).
        guard let strides = layer.config["strides"] is NSNull ? size : layer.pair("strides", default: size) else {
            throw KerasFileError.badConfig(path: path, detail: "\(layer.className) '\(layer.name)' has invalid strides")
        }
        let kind: Pool2D.Kind = layer.className.hasPrefix("Max") ? .max : .average
        return .pool2d(try Pool2D(kind: kind, size: size, strides: strides, padding: try padding()))
    }

    private func zeroPadding() throws -> Op {
        try requireWeightCount(0)
        try requireChannelsLast()
        try requireRank(3)
        let value = layer.config["padding"] ?? 1
        let pads: [Int]
        if let n = (value as? NSNumber).flatMap({ Int(exactly: $0.doubleValue) }) {
            pads = [n, n, n, n]
        } else if let list = value as? [Any], list.count == 2 {
            if let pair = list as? [NSNumber] {
                let a = Int(truncating: pair[0]), b = Int(truncating: pair[1])
                pads = [a, a, b, b]
            } else if let nested = list as? [[NSNumber]], nested.allSatisfy({ $0.count == 2 }) {
                pads = nested.flatMap { $0.map { Int(truncating: $0) } }
            } else {
                throw KerasFileError.badConfig(path: path, detail: "ZeroPadding2D '\(layer.name)' has an invalid padding")
            }
        } else {
            throw KerasFileError.badConfig(path: path, detail: "ZeroPadding2D '\(layer.name)' has an invalid padding")
        }
        return .zeroPadding2d(pads)
    }

    private func batchNormalization() throws -> Op {
        try requireLastAxis(layer.config["axis"] ?? -1, what: "normalizing")
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
        let bn = try BatchNorm(gamma: gamma, beta: beta, movingMean: mean, movingVariance: variance, epsilon: epsilon)
        do {
            _ = try bn.affineCoefficients()  // variance + epsilon > 0 for every channel
        } catch {
            throw KerasFileError.badWeights(path: path, layer: layer.name, detail: "\(error)")
        }
        return .batchNorm(bn)
    }

    /// `x * scale + offset`, scale and offset scalars or per-channel lists.
    private func rescaling() throws -> Op {
        try requireWeightCount(0)
        let channels = inputShape.last ?? 1
        func values(_ key: String, default value: Double) throws -> [Float] {
            let raw = layer.config[key] ?? value
            if let number = raw as? NSNumber { return [Float](repeating: Float(number.doubleValue), count: channels) }
            if let list = raw as? [NSNumber], list.count == channels { return list.map { Float($0.doubleValue) } }
            throw unsupported("\(key) \(raw) (a number or one value per channel is supported)")
        }
        return .affine(try Affine(scale: Tensor(try values("scale", default: 1)), shift: Tensor(try values("offset", default: 0))))
    }

    /// Keras's Normalization layer: `(x - mean) / max(sqrt(variance), 1e-7)`, per channel.
    private func normalization() throws -> Op {
        if layer.bool("invert", default: false) { throw unsupported("invert=True") }
        try requireLastAxis(layer.config["axis"] ?? -1, what: "normalizing")
        let channels = inputShape.last ?? 1
        let mean: [Double], variance: [Double]
        if weights.count >= 2 {
            guard weights[0].count == channels, weights[1].count == channels else {
                throw KerasFileError.badWeights(path: path, layer: layer.name, detail: "mean and variance must have \(channels) values")
            }
            mean = weights[0].values.map(Double.init)
            variance = weights[1].values.map(Double.init)
        } else if let m = layer.config["mean"], let v = layer.config["variance"] {
            func list(_ x: Any) -> [Double]? {
                if let n = x as? NSNumber { return [Double](repeating: n.doubleValue, count: channels) }
                return (x as? [NSNumber]).map { $0.map(\.doubleValue) }.flatMap { $0.count == channels ? $0 : nil }
            }
            guard let mm = list(m), let vv = list(v) else { throw unsupported("mean/variance of this shape") }
            mean = mm
            variance = vv
        } else {
            throw KerasFileError.badWeights(path: path, layer: layer.name, detail: "Normalization without mean and variance (not adapted)")
        }
        let scale = variance.map { 1 / max($0.squareRoot(), 1e-7) }
        let shift = zip(mean, scale).map { -$0 * $1 }
        return .affine(try Affine(scale: Tensor(scale.map { Float($0) }), shift: Tensor(shift.map { Float($0) })))
    }

    private func activation(_ value: Any?) throws -> Activation {
        if let dict = value as? [String: Any] {
            // Keras 3 may serialize an activation as {"class_name": "function", "config": "relu", ...}.
            if let name = dict["config"] as? String { return try activation(name) }
            throw unsupported("a custom activation object")
        }
        guard let name = value as? String else { throw unsupported("a custom or serialized activation object") }
        switch name {
        case "silu": return .swish
        case "hard_sigmoid":
            // tf_keras: clip(0.2x + 0.5, 0, 1); Keras 3: relu6(x + 3) / 6.
            let isKeras2 = kerasVersion.map { $0.hasPrefix("2.") || $0.hasPrefix("1.") } ?? false
            return .hardSigmoid(slope: isKeras2 ? 0.2 : Float(1.0 / 6.0))
        case "leaky_relu": return .leakyRelu(alpha: 0.2)
        case "elu": return .elu(alpha: 1)
        default:
            guard let activation = Activation.simple[name] else { throw unsupported("activation '\(name)'") }
            return activation
        }
    }

    // MARK: - Checks

    private func unsupported(_ feature: String) -> KerasFileError {
        .unsupportedFeature(path: path, layer: layer.name, className: layer.className, feature: feature)
    }

    private func requireChannelsLast() throws {
        if let format = layer.string("data_format"), format != "channels_last" {
            throw unsupported("data_format '\(format)' (bnkit runs channels_last models; re-export with channels_last)")
        }
    }

    private func requireRank(_ rank: Int) throws {
        guard inputShape.count == rank else {
            throw unsupported("an input of shape \(inputShape) (expected (height, width, channels))")
        }
    }

    /// axis: an int, or a one-element list (tf.keras saves [3]); counted with the batch axis.
    private func requireLastAxis(_ value: Any, what: String) throws {
        let rank = inputShape.count
        let axes: [Int]
        if let list = value as? [Any] {
            axes = list.compactMap { ($0 as? NSNumber).flatMap { Int(exactly: $0.doubleValue) } }
        } else if let number = value as? NSNumber, let axis = Int(exactly: number.doubleValue) {
            axes = [axis]
        } else {
            axes = []
        }
        guard axes.count == 1, axes[0] == -1 || axes[0] == rank else {
            throw unsupported("\(what) over axis \(value) (only the last axis, the feature/channel axis, is supported)")
        }
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
