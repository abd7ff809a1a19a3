import ModelIR

/// The depthwise half of a `separable` step: Keras's SeparableConv2D's (no bias, linear), or a
/// standalone DepthwiseConv2D with its bias and element-wise activation whose only reader is a
/// pointwise Conv2D (MobileNet's depthwise → 1×1 pairs), the two run together so the GEMM reads
/// the depthwise output from cache. `reluInput`: its input read through a ReLU (a standalone ReLU
/// before it, fused in). Each value is the one the depthwise step alone writes.
struct DepthwiseStage {
    let kernel: Tensor
    let bias: Tensor?
    let multiplier: Int
    let activation: ActivationKind
    let reluInput: Bool

    /// The depthwise conv of `batch` images of `g` (its output's shape) into `output`; `streamed`:
    /// whether the input comes from beyond L2 (`Kernels.depthwiseConv2d`; by default, judged by
    /// this call's input alone).
    func run(_ x: UnsafePointer<Float>, batch: Int, _ g: Kernels.Spatial, output: UnsafeMutablePointer<Float>, streamed: Bool? = nil) {
        kernel.withUnsafeValues { w in
            Weights.optional(bias) { b in
                Kernels.depthwiseConv2d(input: x, batch: batch, g, multiplier: multiplier, kernel: w.baseAddress!, bias: b,
                                        activation: activation, reluInput: reluInput, output: output, streamed: streamed)
            }
        }
    }
}
