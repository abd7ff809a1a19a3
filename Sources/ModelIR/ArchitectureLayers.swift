/// A depthwise convolution followed by a 1×1 (pointwise) convolution, Keras's
/// SeparableConv2D / SeparableConv1D: depthwise kernel (kh, kw, in, depth multiplier)
/// (1-D: (k, in, m)), pointwise kernel (1, 1, in·m, out) (1-D: (1, in·m, out)), one bias
/// after the pointwise step, then the activation.
public struct SeparableConv2D: Equatable, Sendable {
    public var depthwiseKernel: Tensor
    public var pointwiseKernel: Tensor
    public var bias: Tensor?
    public var window: Window
    public var activation: Activation

    public init(depthwiseKernel: Tensor, pointwiseKernel: Tensor, bias: Tensor?, strides: [Int] = [1, 1], dilation: [Int] = [1, 1],
                padding: Padding, activation: Activation = .linear) throws {
        let rank = depthwiseKernel.shape.count
        guard rank == 3 || rank == 4 else {
            throw ModelError.badWeightShape(role: .depthwiseKernel, expected: "(kh, kw, in, depth_multiplier) or (k, in, depth_multiplier)",
                                            found: depthwiseKernel.shape)
        }
        let middle = depthwiseKernel.shape[rank - 2] * depthwiseKernel.shape[rank - 1]
        let pointwise = pointwiseKernel.shape
        guard pointwise.count == rank, pointwise.dropLast(2).allSatisfy({ $0 == 1 }), pointwise[rank - 2] == middle else {
            throw ModelError.badWeightShape(role: .pointwiseKernel, expected: rank == 4 ? "(1, 1, \(middle), filters)" : "(1, \(middle), filters)",
                                            found: pointwise)
        }
        if let bias, bias.shape != [pointwise[rank - 1]] {
            throw ModelError.badWeightShape(role: .bias, expected: "(\(pointwise[rank - 1]),)", found: bias.shape)
        }
        self.depthwiseKernel = depthwiseKernel
        self.pointwiseKernel = pointwiseKernel
        self.bias = bias
        self.window = try Window(size: rank == 4 ? Array(depthwiseKernel.shape[0..<2]) : [1, depthwiseKernel.shape[0]],
                                 strides: strides, dilation: dilation, padding: padding)
        self.activation = activation
    }

    /// Whether this is the 1-D form (input (steps, channels)).
    public var isOneDimensional: Bool { depthwiseKernel.shape.count == 3 }
    public var inputChannels: Int { depthwiseKernel.shape[depthwiseKernel.shape.count - 2] }
    public var depthMultiplier: Int { depthwiseKernel.shape[depthwiseKernel.shape.count - 1] }
    public var outputChannels: Int { pointwiseKernel.shape[pointwiseKernel.shape.count - 1] }
}

/// A transposed 2-D convolution (Keras Conv2DTranspose, the decoder of
/// segmentation nets): kernel (kh, kw, out, in), Keras's layout. Each input
/// pixel (i, j) adds `x[i, j, :] · kernel[ky, kx, :, :]ᵀ` to output pixel
/// (i·sy + ky − padTop, j·sx + kx − padLeft). Output size (Keras's deconv_output_length):
/// `valid` in·s + max(k − s, 0);
/// `same` in·s (the padding of the conv it inverts: max(k − s, 0), the smaller
/// half before).
public struct Conv2DTranspose: Equatable, Sendable {
    public var kernel: Tensor
    public var bias: Tensor?
    public var size: [Int]
    public var strides: [Int]
    public var padding: Padding
    public var activation: Activation

    public init(kernel: Tensor, bias: Tensor?, strides: [Int], padding: Padding, activation: Activation = .linear) throws {
        guard kernel.shape.count == 4 else {
            throw ModelError.badWeightShape(role: .kernel, expected: "(kh, kw, out, in)", found: kernel.shape)
        }
        guard strides.count == 2, strides.allSatisfy({ $0 >= 1 }), kernel.shape.allSatisfy({ $0 >= 1 }) else {
            throw ModelError.badAttribute(name: "strides", value: "\(strides)")
        }
        guard padding != .causal else { throw ModelError.badAttribute(name: "padding", value: "causal") }
        if let bias, bias.shape != [kernel.shape[2]] {
            throw ModelError.badWeightShape(role: .bias, expected: "(\(kernel.shape[2]),)", found: bias.shape)
        }
        self.kernel = kernel
        self.bias = bias
        self.size = Array(kernel.shape[0..<2])
        self.strides = strides
        self.padding = padding
        self.activation = activation
    }

    public var inputChannels: Int { kernel.shape[3] }
    public var outputChannels: Int { kernel.shape[2] }

    /// For one spatial axis: the output length and the padding removed before it.
    public func output(axis: Int, input: Int) -> (length: Int, padBefore: Int) {
        let k = size[axis], s = strides[axis]
        switch padding {
        case .same: return (input * s, max(k - s, 0) / 2)
        default: return (input * s + max(k - s, 0), 0)
        }
    }
}

/// Layer normalization over a set of axes of each sample (Keras LayerNormalization):
/// `y = (x − mean) / sqrt(var + epsilon) · gamma + beta`, the mean and (population)
/// variance over `axes`; gamma and beta have the shape of those axes.
public struct LayerNorm: Equatable, Sendable {
    /// Normalized axes, counted without the batch axis, ascending.
    public var axes: [Int]
    public var epsilon: Double
    public var gamma: Tensor?
    public var beta: Tensor?

    public init(axes: [Int], epsilon: Double, gamma: Tensor?, beta: Tensor?) throws {
        guard !axes.isEmpty, axes == axes.sorted(), Set(axes).count == axes.count, axes.allSatisfy({ $0 >= 0 }) else {
            throw ModelError.badAttribute(name: "axes", value: "\(axes)")
        }
        guard epsilon.isFinite, epsilon >= 0 else { throw ModelError.badAttribute(name: "epsilon", value: "\(epsilon)") }
        if let gamma, let beta, gamma.shape != beta.shape {
            throw ModelError.badWeightShape(role: .beta, expected: "\(gamma.shape)", found: beta.shape)
        }
        self.axes = axes
        self.epsilon = epsilon
        self.gamma = gamma
        self.beta = beta
    }

    /// The shape gamma and beta must have for an input of `shape`.
    public func parameterShape(for shape: [Int]) -> [Int] { axes.map { shape[$0] } }
}

/// Repeats (nearest) or interpolates (bilinear, half-pixel centres, as
/// `tf.image.resize`) each spatial axis by an integer factor: UpSampling2D,
/// and UpSampling1D as factors [1, n] on (steps, channels).
public struct Upsampling: Equatable, Sendable {
    public enum Interpolation: String, Sendable { case nearest, bilinear }
    public var factors: [Int]
    public var interpolation: Interpolation

    public init(factors: [Int], interpolation: Interpolation) throws {
        guard factors.count == 2, factors.allSatisfy({ $0 >= 1 }) else { throw ModelError.badAttribute(name: "size", value: "\(factors)") }
        self.factors = factors
        self.interpolation = interpolation
    }
}

/// Element-wise merges of several inputs (broadcast as Add and Multiply are).
public enum MergeKind: String, Equatable, Sendable, CaseIterable {
    /// First input minus the second (exactly two inputs).
    case subtract
    case maximum, minimum
    /// The mean of the inputs.
    case average
}
