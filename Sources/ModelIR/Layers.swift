/// Element-wise (or, for softmax, last-axis) activation functions.
public enum Activation: String, CaseIterable, Sendable {
    case linear, relu, sigmoid, tanh, softmax
}

/// What a weight tensor is for; how formats and the library API address weights.
public enum WeightRole: String, CaseIterable, Sendable {
    case kernel, bias
    case gamma, beta, movingMean = "moving_mean", movingVariance = "moving_variance"
    case scale, shift
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
        for c in 0..<channels {
            let variance = Double(movingVariance.values[c]) + epsilon
            guard variance > 0, variance.isFinite else {
                throw ModelError.badAttribute(name: "moving_variance[\(c)] + epsilon", value: "\(variance)")
            }
            let g = gamma.map { Double($0.values[c]) } ?? 1
            let b = beta.map { Double($0.values[c]) } ?? 0
            let s = g / variance.squareRoot()
            scale[c] = s
            shift[c] = b - Double(movingMean.values[c]) * s
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

/// One operation of the graph.
public enum Op: Equatable, Sendable {
    /// The model input; `shape` excludes the batch axis.
    case input(shape: [Int])
    case dense(Dense)
    case batchNorm(BatchNorm)
    case affine(Affine)
    case activation(Activation)
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
        case .batchNorm: "batch_norm"
        case .affine: "affine"
        case .activation: "activation"
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
        case .batchNorm(let bn):
            var list: [(role: WeightRole, tensor: Tensor)] = []
            if let g = bn.gamma { list.append((.gamma, g)) }
            if let b = bn.beta { list.append((.beta, b)) }
            list.append((.movingMean, bn.movingMean))
            list.append((.movingVariance, bn.movingVariance))
            return list
        case .affine(let a):
            return [(.scale, a.scale), (.shift, a.shift)]
        case .input, .activation, .flatten, .reshape, .identity:
            return []
        }
    }

    /// The number of scalar parameters.
    public var parameterCount: Int {
        weights.reduce(0) { $0 + $1.tensor.values.count }
    }
}

/// A named operation and the names of the nodes it reads.
public struct Node: Equatable, Sendable {
    public var name: String
    public var operation: Op
    public var inputs: [String]

    public init(name: String, operation: Op, inputs: [String]) {
        self.name = name
        self.operation = operation
        self.inputs = inputs
    }
}
