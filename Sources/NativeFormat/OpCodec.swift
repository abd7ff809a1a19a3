import ModelIR

/// Ops to and from their header JSON (tensors are handled by the caller).
enum OpCodec {
    static func encode(_ node: Node) -> NodeJSON {
        var json = NodeJSON(name: node.name, op: node.operation.kind, inputs: node.inputs)
        json.shares_weights_with = node.sharesWeightsWith
        func window(_ w: Window, withSize: Bool) {
            if withSize { json.size = w.size }
            json.strides = w.strides
            json.dilation = w.dilation
            json.padding = w.padding.rawValue
        }
        switch node.operation {
        case .input(let shape): json.shape = shape
        case .dense(let d): json.activation = encode(d.activation)
        case .conv2d(let c):
            window(c.window, withSize: false)
            json.groups = c.groups
            json.activation = encode(c.activation)
        case .depthwiseConv2d(let c):
            window(c.window, withSize: false)
            json.activation = encode(c.activation)
        case .batchNorm(let bn): json.epsilon = bn.epsilon
        case .activation(let a): json.activation = encode(a)
        case .pool2d(let p): window(p.window, withSize: true)
        case .globalPool(_, let keepDims): json.keep_dims = keepDims
        case .zeroPadding2d(let pads): json.pads = pads
        case .concatenate(let axis): json.axis = axis
        case .slice(let axis, let start, let end):
            json.axis = axis
            json.pads = [start, end]
        case .reshape(let shape): json.shape = shape
        case .separableConv2d(let c):
            window(c.window, withSize: false)
            json.activation = encode(c.activation)
        case .conv2dTranspose(let c):
            json.strides = c.strides
            json.padding = c.padding.rawValue
            json.activation = encode(c.activation)
        case .layerNorm(let ln):
            json.axes = ln.axes
            json.epsilon = ln.epsilon
        case .upsampling(let up):
            json.size = up.factors
            json.interpolation = up.interpolation.rawValue
        case .cropping2d(let crops): json.pads = crops
        case .transpose(let perm): json.shape = perm
        case .pad2d(let pads, let value):
            json.pads = pads
            json.value = value
        case .affine, .add, .multiply, .merge, .flatten, .identity: break
        }
        return json
    }

    static func encode(_ activation: Activation) -> ActivationJSON {
        var json = ActivationJSON(name: activation.name)
        switch activation {
        case .hardSigmoid(let slope): json.slope = slope
        case .elu(let alpha), .leakyRelu(let alpha): json.alpha = alpha
        case let .clippedRelu(maxValue, slope, threshold):
            json.max_value = maxValue
            json.slope = slope
            json.threshold = threshold
        default: break
        }
        return json
    }

    struct Failure: Error {
        let detail: String
    }

    static func decodeActivation(_ json: ActivationJSON?) throws -> Activation {
        guard let json else { throw Failure(detail: "missing activation") }
        if let simple = Activation.simple[json.name] { return simple }
        func need(_ value: Float?, _ name: String) throws -> Float {
            guard let value, value.isFinite else { throw Failure(detail: "activation '\(json.name)' without a finite '\(name)'") }
            return value
        }
        switch json.name {
        case "hard_silu": return .hardSwish
        case "erf": return .erf
        case "hard_sigmoid": return .hardSigmoid(slope: try need(json.slope, "slope"))
        case "elu": return .elu(alpha: try need(json.alpha, "alpha"))
        case "leaky_relu": return .leakyRelu(alpha: try need(json.alpha, "alpha"))
        case "clipped_relu":
            return .clippedRelu(maxValue: json.max_value, negativeSlope: try need(json.slope, "slope"),
                                threshold: try need(json.threshold, "threshold"))
        default: throw Failure(detail: "unknown activation '\(json.name)'")
        }
    }

    /// Rebuilds an op from its JSON and its tensors by role.
    static func decode(_ json: NodeJSON, weights: [WeightRole: Tensor]) throws -> (op: Op, roles: Set<WeightRole>) {
        func required(_ role: WeightRole) throws -> Tensor {
            guard let tensor = weights[role] else { throw Failure(detail: "missing tensor '\(role.rawValue)'") }
            return tensor
        }
        func padding() throws -> Padding {
            guard let name = json.padding, let padding = Padding(rawValue: name) else { throw Failure(detail: "missing or unknown padding") }
            return padding
        }
        func pair(_ value: [Int]?, _ name: String) throws -> [Int] {
            guard let value, value.count == 2 else { throw Failure(detail: "missing or invalid \(name)") }
            return value
        }
        switch json.op {
        case "input":
            guard let shape = json.shape else { throw Failure(detail: "input without a shape") }
            return (.input(shape: shape), [])
        case "dense":
            return (.dense(try Dense(kernel: try required(.kernel), bias: weights[.bias], activation: try decodeActivation(json.activation))),
                    [.kernel, .bias])
        case "conv2d":
            return (.conv2d(try Conv2D(kernel: try required(.kernel), bias: weights[.bias], strides: try pair(json.strides, "strides"),
                                       dilation: try pair(json.dilation, "dilation"), padding: try padding(), groups: json.groups ?? 1,
                                       activation: try decodeActivation(json.activation))), [.kernel, .bias])
        case "depthwise_conv2d":
            return (.depthwiseConv2d(try DepthwiseConv2D(kernel: try required(.kernel), bias: weights[.bias],
                                                         strides: try pair(json.strides, "strides"), dilation: try pair(json.dilation, "dilation"),
                                                         padding: try padding(), activation: try decodeActivation(json.activation))),
                    [.kernel, .bias])
        case "batch_norm":
            guard let epsilon = json.epsilon else { throw Failure(detail: "batch_norm without epsilon") }
            return (.batchNorm(try BatchNorm(gamma: weights[.gamma], beta: weights[.beta], movingMean: try required(.movingMean),
                                             movingVariance: try required(.movingVariance), epsilon: epsilon)),
                    [.gamma, .beta, .movingMean, .movingVariance])
        case "affine":
            return (.affine(try Affine(scale: try required(.scale), shift: try required(.shift))), [.scale, .shift])
        case "activation":
            return (.activation(try decodeActivation(json.activation)), [])
        case "max_pool2d", "average_pool2d":
            let pool = try Pool2D(kind: json.op == "max_pool2d" ? .max : .average, size: try pair(json.size, "size"),
                                  strides: try pair(json.strides, "strides"), padding: try padding())
            return (.pool2d(pool), [])
        case "global_max_pool", "global_average_pool":
            return (.globalPool(kind: json.op == "global_max_pool" ? .max : .average, keepDims: json.keep_dims ?? false), [])
        case "zero_padding2d":
            guard let pads = json.pads else { throw Failure(detail: "zero_padding2d without pads") }
            return (.zeroPadding2d(pads), [])
        case "separable_conv2d":
            return (.separableConv2d(try SeparableConv2D(depthwiseKernel: try required(.depthwiseKernel), pointwiseKernel: try required(.pointwiseKernel),
                                                         bias: weights[.bias], strides: try pair(json.strides, "strides"),
                                                         dilation: try pair(json.dilation, "dilation"), padding: try padding(),
                                                         activation: try decodeActivation(json.activation))),
                    [.depthwiseKernel, .pointwiseKernel, .bias])
        case "conv2d_transpose":
            return (.conv2dTranspose(try Conv2DTranspose(kernel: try required(.kernel), bias: weights[.bias], strides: try pair(json.strides, "strides"),
                                                         padding: try padding(), activation: try decodeActivation(json.activation))),
                    [.kernel, .bias])
        case "layer_norm":
            guard let axes = json.axes, let epsilon = json.epsilon else { throw Failure(detail: "layer_norm without axes or epsilon") }
            return (.layerNorm(try LayerNorm(axes: axes, epsilon: epsilon, gamma: weights[.gamma], beta: weights[.beta])), [.gamma, .beta])
        case "upsampling":
            guard let name = json.interpolation, let interpolation = Upsampling.Interpolation(rawValue: name) else {
                throw Failure(detail: "upsampling without a known interpolation")
            }
            return (.upsampling(try Upsampling(factors: try pair(json.size, "size"), interpolation: interpolation)), [])
        case "transpose":
            guard let perm = json.shape else { throw Failure(detail: "transpose without a permutation") }
            return (.transpose(perm), [])
        case "pad2d":
            guard let pads = json.pads, let value = json.value, !value.isNaN else { throw Failure(detail: "pad2d without pads or a value") }
            return (.pad2d(pads: pads, value: value), [])
        case "cropping2d":
            guard let crops = json.pads else { throw Failure(detail: "cropping2d without crops") }
            return (.cropping2d(crops), [])
        case let name where MergeKind(rawValue: name) != nil:
            return (.merge(MergeKind(rawValue: name)!), [])
        case "add": return (.add, [])
        case "multiply": return (.multiply, [])
        case "concatenate":
            guard let axis = json.axis else { throw Failure(detail: "concatenate without axis") }
            return (.concatenate(axis: axis), [])
        case "slice":
            guard let axis = json.axis, let range = json.pads, range.count == 2 else { throw Failure(detail: "slice without an axis or a range") }
            return (.slice(axis: axis, start: range[0], end: range[1]), [])
        case "flatten": return (.flatten, [])
        case "reshape":
            guard let shape = json.shape else { throw Failure(detail: "reshape without a shape") }
            return (.reshape(shape), [])
        case "identity": return (.identity, [])
        default:
            throw Failure(detail: "unknown operation '\(json.op)' (written by a newer bnkit?)")
        }
    }
}
