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
    /// The keyword arguments of this call (tf_keras TFOpLambda constants), tensors left out.
    var callArguments: [String: Any] = [:]

    /// What a layer becomes: one op, after optional steps that each replace one of its
    /// inputs (Keras's CustomScaleLayer `x + y·scale`: a scale node on y, then `add`).
    struct Translation {
        var operation: Op
        var preludes: [(suffix: String, operation: Op, input: Int)] = []
    }

    func translation() throws -> Translation {
        switch layer.className {
        case "CustomScaleLayer", "Custom>CustomScaleLayer":
            // keras.applications InceptionResNetV2 (both producers): inputs[0] + inputs[1] * scale.
            try requireWeightCount(0)
            guard inputShapes.count == 2, let scale = layer.double("scale"), scale.isFinite else {
                throw unsupported("\(inputShapes.count) inputs or no numeric 'scale' (expected [x, y] and a scale)")
            }
            let channels = inputShapes[1].last ?? 1
            let scaled = Op.affine(try Affine(scale: Tensor([Float](repeating: Float(scale), count: channels)),
                                              shift: Tensor([Float](repeating: 0, count: channels))))
            return Translation(operation: .add, preludes: [("scaled", scaled, 1)])
        default:
            return Translation(operation: try operation())
        }
    }

    /// Layers that do nothing at inference.
    static let inferenceNoOps: Set<String> = [
        "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
        "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity", "StochasticDepth",
    ]

    private var inputShape: [Int] { inputShapes[0] }

    static let mergeLayers: [String: MergeKind] = ["Subtract": .subtract, "Maximum": .maximum, "Minimum": .minimum, "Average": .average]

    /// A Keras 3 operation applied to one tensor and a number (`x + 3.0`, `x * (1 / 6)`, `6 - x`),
    /// stored as the op's class with the number among the call's positional arguments.
    private func operationWithConstant() throws -> Op? {
        guard inputShapes.count == 1, let positional = callArguments[LayerConfig.positionalKey] as? [Any], positional.count == 2,
              ["Add", "Multiply", "Subtract", "Divide", "TrueDivide"].contains(layer.className) else { return nil }
        guard let index = positional.firstIndex(where: { $0 is NSNumber }), let number = positional[index] as? NSNumber else { return nil }
        let value = Float(number.doubleValue), first = index == 0
        guard value.isFinite else { throw unsupported("a non-finite constant operand") }
        func affine(_ scale: Float, _ shift: Float) throws -> Op { try scalarAffine(scale: scale, shift: shift) }
        switch layer.className {
        case "Add": return try affine(1, value)
        case "Multiply": return try affine(value, 0)
        case "Subtract": return first ? try affine(-1, value) : try affine(1, -value)
        default:
            guard !first, value != 0 else { throw unsupported("dividing a number by a tensor, or by zero") }
            return try affine(1 / value, 0)
        }
    }

    func operation() throws -> Op {
        if let op = try operationWithConstant() { return op }
        if ["Add", "Multiply", "Concatenate"].contains(layer.className) || Self.mergeLayers[layer.className] != nil {
            if inputShapes.count < 2 { throw unsupported("\(inputShapes.count) input(s) (at least 2 are needed)") }
        } else if layer.className != "TFOpLambda" {
            guard inputShapes.count == 1 else { throw unsupported("\(inputShapes.count) inputs") }
        }
        switch layer.className {
        case "Dense": return try dense()
        case "Conv2D", "Convolution2D", "Conv1D", "Convolution1D": return try conv()
        case "DepthwiseConv2D", "DepthwiseConv1D": return try depthwise()
        case "SeparableConv2D", "SeparableConvolution2D", "SeparableConv1D", "SeparableConvolution1D": return try separable()
        case "Conv2DTranspose", "Convolution2DTranspose": return try transposedConv()
        case "LayerNormalization": return try layerNormalization()
        case "LayerScale":
            // ConvNeXt: x * gamma, one value per channel.
            try requireWeightCount(1)
            let channels = inputShape.last ?? 0
            try requireShape(weights[0], [channels], role: .gamma)
            return .affine(try Affine(scale: weights[0], shift: Tensor([Float](repeating: 0, count: channels))))
        case "UpSampling2D", "UpSampling1D": return try upsampling()
        case "Cropping2D", "Cropping1D", "ZeroPadding1D": return try cropOrPad1D()
        case "TFOpLambda": return try tfOperation()
        case "Permute":
            try requireWeightCount(0)
            let dims = (layer.config["dims"] as? [Any])?.compactMap { ($0 as? NSNumber).flatMap { Int(exactly: $0.doubleValue) } } ?? []
            guard dims.count == inputShape.count, dims.sorted() == Array(1...inputShape.count) else {
                throw KerasFileError.badConfig(path: path, detail: "Permute '\(layer.name)' has invalid dims")
            }
            return .transpose(dims.map { $0 - 1 })
        case let name where Self.mergeLayers[name] != nil:
            try requireWeightCount(0)
            if name == "Subtract", inputShapes.count != 2 { throw unsupported("\(inputShapes.count) inputs (Subtract takes 2)") }
            return .merge(Self.mergeLayers[name]!)
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
        case "MaxPooling1D", "AveragePooling1D", "MaxPool1D", "AvgPool1D": return try pooling1D()
        case "GlobalAveragePooling2D", "GlobalMaxPooling2D", "GlobalAvgPool2D", "GlobalMaxPool2D",
             "GlobalAveragePooling1D", "GlobalMaxPooling1D", "GlobalAvgPool1D", "GlobalMaxPool1D":
            try requireWeightCount(0)
            try requireChannelsLast()
            try requireRank(layer.className.hasSuffix("1D") ? 2 : 3)
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
        // On a rank > 1 input Keras applies the kernel to the last axis (ConvNeXt's pointwise layers).
        guard let features = inputShape.last else { throw unsupported("a Dense layer on a scalar input") }
        let useBias = layer.bool("use_bias", default: true)
        try requireWeightCount(useBias ? 2 : 1)
        try requireShape(weights[0], [features, units], role: .kernel)
        if useBias { try requireShape(weights[1], [units], role: .bias) }
        let activation = try activation(layer.config["activation"] ?? "linear")
        return .dense(try Dense(kernel: weights[0], bias: useBias ? weights[1] : nil, activation: activation))
    }

    /// Whether the layer is a 1-D one (Conv1D, …): its input is (steps, channels).
    private var isOneDimensional: Bool { layer.className.hasSuffix("1D") }

    /// kernel_size, strides, dilation_rate and padding, checked; a 1-D layer's as [1, n].
    private func window() throws -> (size: [Int], strides: [Int], dilation: [Int], padding: Padding) {
        try requireChannelsLast()
        try requireRank(isOneDimensional ? 2 : 3)
        let size: [Int]?, strides: [Int]?, dilation: [Int]?
        if isOneDimensional {
            size = layer.single("kernel_size").map { [1, $0] }
            strides = layer.single("strides", default: 1).map { [1, $0] }
            dilation = layer.single("dilation_rate", default: 1).map { [1, $0] }
        } else {
            size = layer.pair("kernel_size")
            strides = layer.pair("strides", default: [1, 1])
            dilation = layer.pair("dilation_rate", default: [1, 1])
        }
        guard let size, let strides, let dilation, (size + strides + dilation).allSatisfy({ $0 >= 1 }) else {
            throw KerasFileError.badConfig(path: path, detail: "\(layer.className) '\(layer.name)' has an invalid kernel_size, strides or dilation_rate")
        }
        let padding = try self.padding()
        if padding == .causal && !isOneDimensional { throw unsupported("padding 'causal' (a 1-D padding)") }
        if strides != [1, 1] && dilation != [1, 1] { throw unsupported("strides \(strides) together with dilation_rate \(dilation)") }
        return (size, strides, dilation, padding)
    }

    /// The kernel shape Keras stores for a window: (kh, kw, …) or, 1-D, (k, …).
    private func kernelShape(_ size: [Int], _ rest: [Int]) -> [Int] {
        (isOneDimensional ? [size[1]] : size) + rest
    }

    private func padding() throws -> Padding {
        let name = (layer.string("padding") ?? "valid").lowercased()
        guard let padding = Padding(rawValue: name) else { throw unsupported("padding '\(name)'") }
        return padding
    }

    private func conv() throws -> Op {
        let (size, strides, dilation, padding) = try window()
        guard let filters = layer.int("filters"), filters > 0 else {
            throw KerasFileError.badConfig(path: path, detail: "\(layer.className) '\(layer.name)' has no positive 'filters'")
        }
        let groups = layer.int("groups") ?? 1
        let channels = inputShape.last!
        guard groups >= 1, channels % groups == 0, filters % groups == 0 else {
            throw KerasFileError.badConfig(path: path, detail: "\(layer.className) '\(layer.name)': groups \(groups) does not divide \(channels) input and \(filters) output channels")
        }
        let useBias = layer.bool("use_bias", default: true)
        try requireWeightCount(useBias ? 2 : 1)
        try requireShape(weights[0], kernelShape(size, [channels / groups, filters]), role: .kernel)
        if useBias { try requireShape(weights[1], [filters], role: .bias) }
        return .conv2d(try Conv2D(kernel: weights[0], bias: useBias ? weights[1] : nil, strides: strides, dilation: dilation,
                                  padding: padding, groups: groups, activation: try activation(layer.config["activation"] ?? "linear")))
    }

    private func depthwise() throws -> Op {
        let (size, strides, dilation, padding) = try window()
        let multiplier = layer.int("depth_multiplier") ?? 1
        guard multiplier >= 1 else { throw KerasFileError.badConfig(path: path, detail: "\(layer.className) '\(layer.name)' has an invalid depth_multiplier") }
        let channels = inputShape.last!
        let useBias = layer.bool("use_bias", default: true)
        try requireWeightCount(useBias ? 2 : 1)
        try requireShape(weights[0], kernelShape(size, [channels, multiplier]), role: .kernel)
        if useBias { try requireShape(weights[1], [channels * multiplier], role: .bias) }
        return .depthwiseConv2d(try DepthwiseConv2D(kernel: weights[0], bias: useBias ? weights[1] : nil, strides: strides,
                                                    dilation: dilation, padding: padding,
                                                    activation: try activation(layer.config["activation"] ?? "linear")))
    }

    /// SeparableConv2D / SeparableConv1D: weights depthwise kernel, pointwise kernel, bias.
    private func separable() throws -> Op {
        let (size, strides, dilation, padding) = try window()
        guard let filters = layer.int("filters"), filters > 0 else {
            throw KerasFileError.badConfig(path: path, detail: "\(layer.className) '\(layer.name)' has no positive 'filters'")
        }
        let multiplier = layer.int("depth_multiplier") ?? 1
        guard multiplier >= 1 else { throw KerasFileError.badConfig(path: path, detail: "\(layer.className) '\(layer.name)' has an invalid depth_multiplier") }
        let channels = inputShape.last!
        let useBias = layer.bool("use_bias", default: true)
        try requireWeightCount(useBias ? 3 : 2)
        try requireShape(weights[0], kernelShape(size, [channels, multiplier]), role: .depthwiseKernel)
        try requireShape(weights[1], (isOneDimensional ? [1] : [1, 1]) + [channels * multiplier, filters], role: .pointwiseKernel)
        if useBias { try requireShape(weights[2], [filters], role: .bias) }
        return .separableConv2d(try SeparableConv2D(depthwiseKernel: weights[0], pointwiseKernel: weights[1], bias: useBias ? weights[2] : nil,
                                                    strides: strides, dilation: dilation, padding: padding,
                                                    activation: try activation(layer.config["activation"] ?? "linear")))
    }

    /// Conv2DTranspose: kernel (kh, kw, filters, in); output_padding and dilation are refused.
    private func transposedConv() throws -> Op {
        try requireChannelsLast()
        try requireRank(3)
        guard let size = layer.pair("kernel_size"), let strides = layer.pair("strides", default: [1, 1]),
              (size + strides).allSatisfy({ $0 >= 1 }) else {
            throw KerasFileError.badConfig(path: path, detail: "Conv2DTranspose '\(layer.name)' has an invalid kernel_size or strides")
        }
        if let outputPadding = layer.config["output_padding"], !(outputPadding is NSNull) {
            throw unsupported("output_padding \(outputPadding)")
        }
        if let dilation = layer.pair("dilation_rate", default: [1, 1]), dilation != [1, 1] { throw unsupported("dilation_rate \(dilation)") }
        let padding = try self.padding()
        guard padding != .causal else { throw unsupported("padding 'causal'") }
        guard let filters = layer.int("filters"), filters > 0 else {
            throw KerasFileError.badConfig(path: path, detail: "Conv2DTranspose '\(layer.name)' has no positive 'filters'")
        }
        if let groups = layer.int("groups"), groups != 1 { throw unsupported("groups \(groups)") }
        let useBias = layer.bool("use_bias", default: true)
        try requireWeightCount(useBias ? 2 : 1)
        try requireShape(weights[0], size + [filters, inputShape[2]], role: .kernel)
        if useBias { try requireShape(weights[1], [filters], role: .bias) }
        return .conv2dTranspose(try Conv2DTranspose(kernel: weights[0], bias: useBias ? weights[1] : nil, strides: strides, padding: padding,
                                                    activation: try activation(layer.config["activation"] ?? "linear")))
    }

    /// LayerNormalization over the configured axes (counted with the batch axis in the file).
    private func layerNormalization() throws -> Op {
        if layer.bool("rms_scaling", default: false) { throw unsupported("rms_scaling=True") }
        let rank = inputShape.count
        let raw = layer.config["axis"] ?? -1
        let listed: [Any] = (raw as? [Any]) ?? [raw]
        var axes: [Int] = []
        for value in listed {
            guard let axis = (value as? NSNumber).flatMap({ Int(exactly: $0.doubleValue) }) else { throw unsupported("axis \(raw)") }
            let normalized = axis < 0 ? rank + axis : axis - 1
            guard normalized >= 0, normalized < rank else { throw unsupported("normalizing over axis \(axis) of a rank-\(rank + 1) input (the batch axis or beyond)") }
            axes.append(normalized)
        }
        axes = Array(Set(axes)).sorted()
        guard let epsilon = layer.double("epsilon"), epsilon.isFinite, epsilon >= 0 else {
            throw KerasFileError.badConfig(path: path, detail: "LayerNormalization '\(layer.name)' has no valid 'epsilon'")
        }
        let scale = layer.bool("scale", default: true), center = layer.bool("center", default: true)
        try requireWeightCount((scale ? 1 : 0) + (center ? 1 : 0))
        let shape = axes.map { inputShape[$0] }
        for tensor in weights where tensor.shape != shape {
            throw KerasFileError.badWeights(path: path, layer: layer.name, detail: "gamma/beta have shape \(tensor.shape), expected \(shape)")
        }
        return .layerNorm(try LayerNorm(axes: axes, epsilon: epsilon, gamma: scale ? weights[0] : nil, beta: center ? weights[scale ? 1 : 0] : nil))
    }

    /// UpSampling2D (size, interpolation nearest or bilinear) and UpSampling1D (size: repeats of each step).
    private func upsampling() throws -> Op {
        try requireWeightCount(0)
        try requireChannelsLast()
        if layer.className == "UpSampling1D" {
            try requireRank(2)
            guard let size = layer.single("size", default: 2), size >= 1 else { throw unsupported("size \(layer.config["size"] ?? "")") }
            return .upsampling(try Upsampling(factors: [1, size], interpolation: .nearest))
        }
        try requireRank(3)
        guard let size = layer.pair("size", default: [2, 2]), size.allSatisfy({ $0 >= 1 }) else {
            throw unsupported("size \(layer.config["size"] ?? "")")
        }
        let name = layer.string("interpolation") ?? "nearest"
        guard let interpolation = Upsampling.Interpolation(rawValue: name) else { throw unsupported("interpolation '\(name)'") }
        return .upsampling(try Upsampling(factors: size, interpolation: interpolation))
    }

    /// Cropping2D ((top, bottom), (left, right)), Cropping1D (start, end) and ZeroPadding1D (start, end).
    private func cropOrPad1D() throws -> Op {
        try requireWeightCount(0)
        try requireChannelsLast()
        let key = layer.className == "ZeroPadding1D" ? "padding" : "cropping"
        let value = layer.config[key] ?? 1
        func ints(_ x: Any) -> [Int]? {
            if let n = (x as? NSNumber).flatMap({ Int(exactly: $0.doubleValue) }) { return [n, n] }
            guard let list = x as? [Any] else { return nil }
            let values = list.compactMap { ($0 as? NSNumber).flatMap { Int(exactly: $0.doubleValue) } }
            return values.count == list.count ? values : nil
        }
        let amounts: [Int]?
        if layer.className == "Cropping2D" {
            try requireRank(3)
            if let list = value as? [Any], list.count == 2, let a = ints(list[0]), let b = ints(list[1]), a.count == 2, b.count == 2 {
                amounts = a + b
            } else if let pair = ints(value), pair.count == 2 {
                amounts = [pair[0], pair[0], pair[1], pair[1]]
            } else {
                amounts = nil
            }
        } else {
            try requireRank(2)
            amounts = ints(value).flatMap { $0.count == 2 ? [0, 0] + $0 : nil }
        }
        guard let amounts, amounts.allSatisfy({ $0 >= 0 }) else {
            throw KerasFileError.badConfig(path: path, detail: "\(layer.className) '\(layer.name)' has an invalid \(key)")
        }
        return layer.className == "ZeroPadding1D" ? .zeroPadding2d(amounts) : .cropping2d(amounts)
    }

    /// tf_keras's TFOpLambda: a TensorFlow operator applied in the functional API, read from its
    /// name and constant arguments (never run). The second operand is a tensor (an input of the
    /// layer) or a number in the call's arguments.
    private func tfOperation() throws -> Op {
        try requireWeightCount(0)
        guard let function = layer.string("function") else {
            throw KerasFileError.badConfig(path: path, detail: "TFOpLambda '\(layer.name)' has no 'function'")
        }
        let feature = "the TensorFlow operator tf.\(function)"
        func constant(_ key: String) -> Float? {
            (callArguments[key] as? NSNumber).map { Float($0.doubleValue) }
        }
        func affine(scale: Float, shift: Float) throws -> Op { try scalarAffine(scale: scale, shift: shift) }
        let binary: [String: (tensor: Op, constant: ((Float) throws -> Op)?)] = [
            "__operators__.add": (.add, { try affine(scale: 1, shift: $0) }),
            "math.add": (.add, { try affine(scale: 1, shift: $0) }),
            "math.multiply": (.multiply, { try affine(scale: $0, shift: 0) }),
            "__operators__.mul": (.multiply, { try affine(scale: $0, shift: 0) }),
            "math.subtract": (.merge(.subtract), { try affine(scale: 1, shift: -$0) }),
            "__operators__.sub": (.merge(.subtract), { try affine(scale: 1, shift: -$0) }),
            "math.truediv": (.identity, { try affine(scale: 1 / $0, shift: 0) }),
            "__operators__.truediv": (.identity, { try affine(scale: 1 / $0, shift: 0) }),
            "math.divide": (.identity, { try affine(scale: 1 / $0, shift: 0) }),
            "math.maximum": (.merge(.maximum), nil),
            "math.minimum": (.merge(.minimum), nil),
        ]
        let unary: [String: Activation] = [
            "nn.relu": .relu, "nn.relu6": .relu6, "math.sigmoid": .sigmoid, "nn.sigmoid": .sigmoid, "math.tanh": .tanh, "nn.tanh": .tanh,
            "nn.silu": .swish, "nn.swish": .swish, "nn.softmax": .softmax, "math.softplus": .softplus, "nn.softplus": .softplus,
        ]
        if let activation = unary[function] {
            guard inputShapes.count == 1 else { throw unsupported("\(feature) on \(inputShapes.count) tensors") }
            return .activation(activation)
        }
        guard let forms = binary[function] else { throw unsupported(feature) }
        switch inputShapes.count {
        case 2 where forms.tensor != .identity:
            return forms.tensor
        case 1:
            guard let make = forms.constant, let value = constant("y"), value.isFinite, !(function.hasSuffix("div") && value == 0) else {
                throw unsupported("\(feature) with an operand that is neither a tensor nor a finite number")
            }
            return try make(value)
        default:
            throw unsupported("\(feature) on \(inputShapes.count) tensors")
        }
    }

    /// `x · scale + shift` with one scale and shift for every channel (a tensor-and-number operation).
    private func scalarAffine(scale: Float, shift: Float) throws -> Op {
        let channels = inputShape.last ?? 1
        return .affine(try Affine(scale: Tensor([Float](repeating: scale, count: channels)), shift: Tensor([Float](repeating: shift, count: channels))))
    }

    private func pooling1D() throws -> Op {
        try requireWeightCount(0)
        try requireChannelsLast()
        try requireRank(2)
        guard let size = layer.single("pool_size", default: 2), size >= 1 else {
            throw KerasFileError.badConfig(path: path, detail: "\(layer.className) '\(layer.name)' has an invalid pool_size")
        }
        guard let strides = layer.config["strides"] is NSNull ? size : layer.single("strides", default: size), strides >= 1 else {
            throw KerasFileError.badConfig(path: path, detail: "\(layer.className) '\(layer.name)' has invalid strides")
        }
        let kind: Pool2D.Kind = layer.className.hasPrefix("Max") ? .max : .average
        let padding = try self.padding()
        guard padding != .causal else { throw unsupported("padding 'causal'") }
        return .pool2d(try Pool2D(kind: kind, size: [1, size], strides: [1, strides], padding: padding))
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
        case "hard_silu", "hard_swish": return .hardSwish
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
