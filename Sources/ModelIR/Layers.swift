/// Element-wise activation functions (softmax: over the last axis).
public enum Activation: Equatable, Sendable {
    case linear, relu, relu6, sigmoid, tanh, softmax, selu, swish, softplus, softsign, exponential
    /// `gelu`: exact (erf) or the tanh approximation.
    case gelu(approximate: Bool)
    /// `clip(slope * x + 0.5, 0, 1)`: slope 0.2 in Keras 2, 1/6 in Keras 3.
    case hardSigmoid(slope: Float)
    /// `x > 0 ? x : alpha * (exp(x) - 1)`.
    case elu(alpha: Float)
    /// `x >= 0 ? x : alpha * x`.
    case leakyRelu(alpha: Float)
    /// Keras's general ReLU layer: `x >= threshold ? min(x, maxValue) : negativeSlope * (x - threshold)`.
    case clippedRelu(maxValue: Float?, negativeSlope: Float, threshold: Float)
    /// `x · relu6(x + 3) / 6` (Keras 3 `hard_silu` / `hard_swish`, MobileNetV3).
    case hardSwish
    /// The error function (ONNX `Erf`: the exact GELU as PyTorch exports it, decomposed).
    case erf

    /// The name used in files and messages.
    public var name: String {
        switch self {
        case .linear: "linear"
        case .relu: "relu"
        case .relu6: "relu6"
        case .sigmoid: "sigmoid"
        case .tanh: "tanh"
        case .softmax: "softmax"
        case .selu: "selu"
        case .swish: "swish"
        case .softplus: "softplus"
        case .softsign: "softsign"
        case .exponential: "exponential"
        case .gelu(let approximate): approximate ? "gelu_tanh" : "gelu"
        case .hardSigmoid: "hard_sigmoid"
        case .elu: "elu"
        case .leakyRelu: "leaky_relu"
        case .clippedRelu: "clipped_relu"
        case .hardSwish: "hard_silu"
        case .erf: "erf"
        }
    }

    /// The parameter-free activations by name.
    public static let simple: [String: Activation] = [
        "linear": .linear, "relu": .relu, "relu6": .relu6, "sigmoid": .sigmoid, "tanh": .tanh, "softmax": .softmax,
        "selu": .selu, "swish": .swish, "softplus": .softplus, "softsign": .softsign, "exponential": .exponential,
        "gelu": .gelu(approximate: false), "gelu_tanh": .gelu(approximate: true), "hard_silu": .hardSwish,
    ]

    /// Whether `f(0) == 0` and `f` is the identity: only `linear` may be folded across.
    public var isLinear: Bool { self == .linear }
}

/// What a weight tensor is for; how formats and the library API address weights.
public enum WeightRole: String, CaseIterable, Sendable {
    case kernel, bias
    case gamma, beta, movingMean = "moving_mean", movingVariance = "moving_variance"
    case scale, shift
    /// SeparableConv2D's two kernels.
    case depthwiseKernel = "depthwise_kernel", pointwiseKernel = "pointwise_kernel"
}

/// A fully connected layer: `y = activation(x · kernel + bias)`.
/// The kernel layout is Keras's: (inputs, outputs), the output axis last.
public struct Dense: Equatable, Sendable {
    public var kernel: Tensor
    public var bias: Tensor?
    public var activation: Activation

    public init(kernel: Tensor, bias: Tensor?, activation: Activation) throws {
        guard kernel.shape.count == 2 else {
            throw ModelError.badWeightShape(role: .kernel, expected: "(inputs, units)", found: kernel.shape)
        }
        if let bias, bias.shape != [kernel.shape[1]] {
            throw ModelError.badWeightShape(role: .bias, expected: "(\(kernel.shape[1]),)", found: bias.shape)
        }
        self.kernel = kernel
        self.bias = bias
        self.activation = activation
    }

    public var inputs: Int { kernel.shape[0] }
    public var units: Int { kernel.shape[1] }
}

/// Batch normalization at inference over the last (feature/channel) axis:
/// `y = gamma * (x - movingMean) / sqrt(movingVariance + epsilon) + beta`.
/// `gamma` is nil when the layer was built with `scale=False` (gamma = 1),
/// `beta` is nil with `center=False` (beta = 0).
public struct BatchNorm: Equatable, Sendable {
    public var gamma: Tensor?
    public var beta: Tensor?
    public var movingMean: Tensor
    public var movingVariance: Tensor
    public var epsilon: Double

    public init(gamma: Tensor?, beta: Tensor?, movingMean: Tensor, movingVariance: Tensor, epsilon: Double) throws {
        let channels = movingMean.shape
        guard channels.count == 1 else {
            throw ModelError.badWeightShape(role: .movingMean, expected: "(channels,)", found: channels)
        }
        for (role, tensor) in [(WeightRole.gamma, gamma), (.beta, beta), (.movingVariance, movingVariance)] {
            if let tensor, tensor.shape != channels {
                throw ModelError.badWeightShape(role: role, expected: "(\(channels[0]),)", found: tensor.shape)
            }
        }
        guard epsilon.isFinite, epsilon >= 0 else { throw ModelError.badAttribute(name: "epsilon", value: "\(epsilon)") }
        self.gamma = gamma
        self.beta = beta
        self.movingMean = movingMean
        self.movingVariance = movingVariance
        self.epsilon = epsilon
    }

    public var channels: Int { movingMean.shape[0] }

    /// The equivalent per-channel affine map `y = s*x + t`, computed in Double:
    /// `s = gamma / sqrt(var + eps)`, `t = beta - mean * s`.
    public func affineCoefficients() throws -> (scale: [Double], shift: [Double]) {
        var scale = [Double](repeating: 0, count: channels)
        var shift = [Double](repeating: 0, count: channels)
        let variances = movingVariance.values, means = movingMean.values
        let gammas = gamma?.values, betas = beta?.values
        for c in 0..<channels {
            let variance = Double(variances[c]) + epsilon
            guard variance > 0, variance.isFinite else {
                throw ModelError.badAttribute(name: "moving_variance[\(c)] + epsilon", value: "\(variance)")
            }
            let g = gammas.map { Double($0[c]) } ?? 1
            let b = betas.map { Double($0[c]) } ?? 0
            let s = g / variance.squareRoot()
            scale[c] = s
            shift[c] = b - Double(means[c]) * s
        }
        return (scale, shift)
    }
}

/// A per-channel (last axis) scale and shift: `y = scale * x + shift`.
/// What a BatchNorm becomes when it has nothing to fold into.
public struct Affine: Equatable, Sendable {
    public var scale: Tensor
    public var shift: Tensor

    public init(scale: Tensor, shift: Tensor) throws {
        guard scale.shape.count == 1 else {
            throw ModelError.badWeightShape(role: .scale, expected: "(channels,)", found: scale.shape)
        }
        guard shift.shape == scale.shape else {
            throw ModelError.badWeightShape(role: .shift, expected: "(\(scale.shape[0]),)", found: shift.shape)
        }
        self.scale = scale
        self.shift = shift
    }

    public var channels: Int { scale.shape[0] }
}

/// How a spatial window treats the borders (TensorFlow's rules).
public enum Padding: String, Equatable, Sendable {
    /// No padding: output = floor((in - effective kernel) / stride) + 1.
    case valid
    /// output = ceil(in / stride); the padding total is split with the extra
    /// pixel at the bottom/right.
    case same
    /// 1-D convolutions only: output = ceil(in / stride), all the padding
    /// ((k − 1)·dilation) before, so no output sees a later step.
    case causal
}

/// Window geometry shared by convolutions and pooling, in (height, width) order.
public struct Window: Equatable, Sendable {
    public var size: [Int]
    public var strides: [Int]
    public var dilation: [Int]
    public var padding: Padding

    public init(size: [Int], strides: [Int], dilation: [Int] = [1, 1], padding: Padding) throws {
        for (name, values) in [("kernel size", size), ("strides", strides), ("dilation", dilation)] {
            guard values.count == 2, values.allSatisfy({ $0 >= 1 }) else {
                throw ModelError.badAttribute(name: name, value: "\(values)")
            }
        }
        self.size = size
        self.strides = strides
        self.dilation = dilation
        self.padding = padding
    }

    /// For one spatial axis: the output length and the padding before it.
    public func output(axis: Int, input: Int) -> (length: Int, padBefore: Int) {
        let effective = (size[axis] - 1) * dilation[axis] + 1
        switch padding {
        case .valid:
            return (input >= effective ? (input - effective) / strides[axis] + 1 : 0, 0)
        case .same:
            let length = (input + strides[axis] - 1) / strides[axis]
            let total = max((length - 1) * strides[axis] + effective - input, 0)
            return (length, total / 2)
        case .causal:
            return ((input + strides[axis] - 1) / strides[axis], effective - 1)
        }
    }
}

/// A 2-D convolution over (height, width, channels), Keras layout:
/// kernel (kh, kw, in / groups, out), output channel last. A rank-3 kernel
/// (k, in / groups, out) is Keras's Conv1D over (steps, channels): the same
/// computation on a height-1 image (window [1, k]).
public struct Conv2D: Equatable, Sendable {
    public var kernel: Tensor
    public var bias: Tensor?
    public var window: Window
    public var groups: Int
    public var activation: Activation

    public init(kernel: Tensor, bias: Tensor?, strides: [Int] = [1, 1], dilation: [Int] = [1, 1], padding: Padding,
                groups: Int = 1, activation: Activation = .linear) throws {
        let rank = kernel.shape.count
        guard rank == 4 || rank == 3 else {
            throw ModelError.badWeightShape(role: .kernel, expected: "(kh, kw, in/groups, out) or (k, in/groups, out)", found: kernel.shape)
        }
        guard groups >= 1, kernel.shape[rank - 1] % groups == 0 else { throw ModelError.badAttribute(name: "groups", value: "\(groups)") }
        if let bias, bias.shape != [kernel.shape[rank - 1]] {
            throw ModelError.badWeightShape(role: .bias, expected: "(\(kernel.shape[rank - 1]),)", found: bias.shape)
        }
        guard padding != .causal || rank == 3 else { throw ModelError.badAttribute(name: "padding", value: "causal (1-D only)") }
        self.kernel = kernel
        self.bias = bias
        self.window = try Window(size: rank == 4 ? Array(kernel.shape[0..<2]) : [1, kernel.shape[0]], strides: strides,
                                 dilation: dilation, padding: padding)
        self.groups = groups
        self.activation = activation
    }

    /// Whether this is Keras's Conv1D (input (steps, channels)).
    public var isOneDimensional: Bool { kernel.shape.count == 3 }
    public var inputChannels: Int { kernel.shape[kernel.shape.count - 2] * groups }
    public var outputChannels: Int { kernel.shape[kernel.shape.count - 1] }
}

/// A depthwise 2-D convolution: kernel (kh, kw, in, depth multiplier);
/// output channel `c * depthMultiplier + m`. A rank-3 kernel (k, in, m) is
/// Keras's DepthwiseConv1D.
public struct DepthwiseConv2D: Equatable, Sendable {
    public var kernel: Tensor
    public var bias: Tensor?
    public var window: Window
    public var activation: Activation

    public init(kernel: Tensor, bias: Tensor?, strides: [Int] = [1, 1], dilation: [Int] = [1, 1], padding: Padding,
                activation: Activation = .linear) throws {
        let rank = kernel.shape.count
        guard rank == 4 || rank == 3 else {
            throw ModelError.badWeightShape(role: .kernel, expected: "(kh, kw, in, depth_multiplier) or (k, in, depth_multiplier)", found: kernel.shape)
        }
        let channels = kernel.shape[rank - 2] * kernel.shape[rank - 1]
        if let bias, bias.shape != [channels] {
            throw ModelError.badWeightShape(role: .bias, expected: "(\(channels),)", found: bias.shape)
        }
        guard padding != .causal || rank == 3 else { throw ModelError.badAttribute(name: "padding", value: "causal (1-D only)") }
        self.kernel = kernel
        self.bias = bias
        self.window = try Window(size: rank == 4 ? Array(kernel.shape[0..<2]) : [1, kernel.shape[0]], strides: strides,
                                 dilation: dilation, padding: padding)
        self.activation = activation
    }

    /// Whether this is Keras's DepthwiseConv1D (input (steps, channels)).
    public var isOneDimensional: Bool { kernel.shape.count == 3 }
    public var inputChannels: Int { kernel.shape[kernel.shape.count - 2] }
    public var depthMultiplier: Int { kernel.shape[kernel.shape.count - 1] }
    public var outputChannels: Int { inputChannels * depthMultiplier }
}

/// Max or average pooling over (height, width). Average pooling with `same`
/// padding divides by the number of real (unpadded) pixels, as TensorFlow does.
/// On a (steps, channels) input (1-D pooling) the window is [1, k].
public struct Pool2D: Equatable, Sendable {
    public enum Kind: String, Sendable { case max, average }
    public var kind: Kind
    public var window: Window

    public init(kind: Kind, size: [Int], strides: [Int], padding: Padding) throws {
        self.kind = kind
        self.window = try Window(size: size, strides: strides, padding: padding)
    }
}

/// One operation of the graph.
public enum Op: Equatable, Sendable {
    /// The model input; `shape` excludes the batch axis.
    case input(shape: [Int])
    case dense(Dense)
    case conv2d(Conv2D)
    case depthwiseConv2d(DepthwiseConv2D)
    case batchNorm(BatchNorm)
    case affine(Affine)
    case activation(Activation)
    case pool2d(Pool2D)
    /// Mean or max over height and width; `keepDims` keeps them as 1 × 1.
    case globalPool(kind: Pool2D.Kind, keepDims: Bool)
    /// Zeros around (height, width): [top, bottom, left, right].
    case zeroPadding2d([Int])
    /// Element-wise sum / product of inputs (broadcast: each size equal, or 1).
    case add
    case multiply
    /// The other element-wise merges (broadcast as `add`).
    case merge(MergeKind)
    case separableConv2d(SeparableConv2D)
    case conv2dTranspose(Conv2DTranspose)
    case layerNorm(LayerNorm)
    /// UpSampling2D / UpSampling1D.
    case upsampling(Upsampling)
    /// Reorders the sample axes: output axis i is input axis `perm[i]` (ONNX Transpose,
    /// Keras Permute; an imported ONNX graph's input changes layout once, here).
    case transpose([Int])
    /// Pads (height, width) with a constant, [top, bottom, left, right] (ONNX MaxPool's
    /// padding, −∞; zero padding is `zeroPadding2d`).
    case pad2d(pads: [Int], value: Float)
    /// Removes rows and columns at the borders: [top, bottom, left, right]
    /// (Cropping2D; Cropping1D on (steps, channels) as [0, 0, start, end]).
    case cropping2d([Int])
    /// Joins inputs along `axis` (counted without the batch axis).
    case concatenate(axis: Int)
    /// Keeps indices `start..<end` of one sample axis (ONNX Slice and Split of the channels:
    /// ShuffleNet's channel split).
    case slice(axis: Int, start: Int, end: Int)
    /// Collapses all non-batch axes into one.
    case flatten
    /// Reshapes the non-batch axes; one dimension may be -1.
    case reshape([Int])
    /// Passes its input through unchanged (Dropout and friends at inference).
    case identity

    /// A short name for messages and files: `dense`, `batch_norm`, ...
    public var kind: String {
        switch self {
        case .input: "input"
        case .dense: "dense"
        case .conv2d: "conv2d"
        case .depthwiseConv2d: "depthwise_conv2d"
        case .batchNorm: "batch_norm"
        case .affine: "affine"
        case .activation: "activation"
        case .pool2d(let p): p.kind == .max ? "max_pool2d" : "average_pool2d"
        case .globalPool(let kind, _): kind == .max ? "global_max_pool" : "global_average_pool"
        case .zeroPadding2d: "zero_padding2d"
        case .add: "add"
        case .multiply: "multiply"
        case .merge(let kind): kind.rawValue
        case .separableConv2d: "separable_conv2d"
        case .conv2dTranspose: "conv2d_transpose"
        case .layerNorm: "layer_norm"
        case .upsampling: "upsampling"
        case .cropping2d: "cropping2d"
        case .transpose: "transpose"
        case .pad2d: "pad2d"
        case .concatenate: "concatenate"
        case .slice: "slice"
        case .flatten: "flatten"
        case .reshape: "reshape"
        case .identity: "identity"
        }
    }

    /// The weight tensors by role, in a fixed order.
    public var weights: [(role: WeightRole, tensor: Tensor)] {
        switch self {
        case .dense(let d):
            return [(.kernel, d.kernel)] + (d.bias.map { [(.bias, $0)] } ?? [])
        case .conv2d(let c):
            return [(.kernel, c.kernel)] + (c.bias.map { [(.bias, $0)] } ?? [])
        case .depthwiseConv2d(let c):
            return [(.kernel, c.kernel)] + (c.bias.map { [(.bias, $0)] } ?? [])
        case .separableConv2d(let c):
            return [(.depthwiseKernel, c.depthwiseKernel), (.pointwiseKernel, c.pointwiseKernel)] + (c.bias.map { [(.bias, $0)] } ?? [])
        case .conv2dTranspose(let c):
            return [(.kernel, c.kernel)] + (c.bias.map { [(.bias, $0)] } ?? [])
        case .layerNorm(let ln):
            return (ln.gamma.map { [(.gamma, $0)] } ?? []) + (ln.beta.map { [(.beta, $0)] } ?? [])
        case .batchNorm(let bn):
            var list: [(role: WeightRole, tensor: Tensor)] = []
            if let g = bn.gamma { list.append((.gamma, g)) }
            if let b = bn.beta { list.append((.beta, b)) }
            list.append((.movingMean, bn.movingMean))
            list.append((.movingVariance, bn.movingVariance))
            return list
        case .affine(let a):
            return [(.scale, a.scale), (.shift, a.shift)]
        default:
            return []
        }
    }

    /// The activation a weighted layer applies to its output, if any.
    public var fusedActivation: Activation? {
        switch self {
        case .dense(let d): d.activation
        case .conv2d(let c): c.activation
        case .depthwiseConv2d(let c): c.activation
        case .separableConv2d(let c): c.activation
        case .conv2dTranspose(let c): c.activation
        default: nil
        }
    }

    /// The number of scalar parameters.
    public var parameterCount: Int {
        weights.reduce(0) { $0 + $1.tensor.count }
    }
}

/// A named operation and the names of the nodes it reads.
public struct Node: Equatable, Sendable {
    public var name: String
    public var operation: Op
    public var inputs: [String]
    /// When this node is a repeated call of a layer (Keras shared layers):
    /// the name of the node that owns the weights. Nodes sharing weights
    /// hold equal tensors; folding never changes them.
    public var sharesWeightsWith: String?

    public init(name: String, operation: Op, inputs: [String], sharesWeightsWith: String? = nil) {
        self.name = name
        self.operation = operation
        self.inputs = inputs
        self.sharesWeightsWith = sharesWeightsWith
    }
}

extension Op {
    /// This weighted op with its fused activation replaced.
    public func replacingActivation(_ activation: Activation) throws -> Op {
        switch self {
        case .dense(var d): d.activation = activation; return .dense(d)
        case .conv2d(var c): c.activation = activation; return .conv2d(c)
        case .depthwiseConv2d(var c): c.activation = activation; return .depthwiseConv2d(c)
        case .separableConv2d(var c): c.activation = activation; return .separableConv2d(c)
        case .conv2dTranspose(var c): c.activation = activation; return .conv2dTranspose(c)
        default: throw ModelError.badAttribute(name: "activation", value: "\(kind) has no fused activation")
        }
    }

    /// This op with the `role` weight replaced by `tensor` (same shape required).
    public func replacingWeight(_ role: WeightRole, with tensor: Tensor) throws -> Op {
        guard let current = weights.first(where: { $0.role == role })?.tensor else {
            throw ModelError.badAttribute(name: role.rawValue, value: "not a weight of \(kind)")
        }
        guard current.shape == tensor.shape else {
            throw ModelError.badWeightShape(role: role, expected: "\(current.shape)", found: tensor.shape)
        }
        switch self {
        case .dense(var d):
            if role == .kernel { d.kernel = tensor } else { d.bias = tensor }
            return .dense(d)
        case .conv2d(var c):
            if role == .kernel { c.kernel = tensor } else { c.bias = tensor }
            return .conv2d(c)
        case .depthwiseConv2d(var c):
            if role == .kernel { c.kernel = tensor } else { c.bias = tensor }
            return .depthwiseConv2d(c)
        case .separableConv2d(var c):
            switch role {
            case .depthwiseKernel: c.depthwiseKernel = tensor
            case .pointwiseKernel: c.pointwiseKernel = tensor
            default: c.bias = tensor
            }
            return .separableConv2d(c)
        case .conv2dTranspose(var c):
            if role == .kernel { c.kernel = tensor } else { c.bias = tensor }
            return .conv2dTranspose(c)
        case .layerNorm(var ln):
            if role == .gamma { ln.gamma = tensor } else { ln.beta = tensor }
            return .layerNorm(ln)
        case .batchNorm(var bn):
            switch role {
            case .gamma: bn.gamma = tensor
            case .beta: bn.beta = tensor
            case .movingMean: bn.movingMean = tensor
            default: bn.movingVariance = tensor
            }
            return .batchNorm(bn)
        case .affine(var a):
            if role == .scale { a.scale = tensor } else { a.shift = tensor }
            return .affine(a)
        default:
            return self
        }
    }
}
