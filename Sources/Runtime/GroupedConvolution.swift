import CKernels
import ModelIR

/// A grouped convolution (ResNeXt's and RegNet's 3×3 convs, more than one input channel per
/// group): its kernel and bias packed once for `bnk_grouped_conv2d` (group by group, tap by tap,
/// the group's outputs padded to a multiple of 8), which runs it directly, vectorized over each
/// group's output channels (grouped.c).
struct GroupedConvolution {
    let geometry: Kernels.Spatial
    let groups: Int
    /// Output channels per group.
    let outputs: Int
    let activation: ActivationKind
    private let packed: [Float]

    init(kernel: Tensor, bias: Tensor?, geometry g: Kernels.Spatial, groups: Int, activation: ActivationKind) {
        let taps = g.kernelHeight * g.kernelWidth, perGroup = g.inChannels / groups, outputs = g.outChannels / groups
        var packed = [Float](repeating: 0, count: bnk_grouped_packed_size(Int32(groups), Int32(taps), Int32(perGroup), Int32(outputs)))
        kernel.withUnsafeValues { w in
            Weights.optional(bias) { b in
                packed.withUnsafeMutableBufferPointer { p in
                    bnk_grouped_pack(w.baseAddress!, b, Int32(groups), Int32(taps), Int32(perGroup), Int32(outputs), p.baseAddress!)
                }
            }
        }
        self.geometry = g
        self.groups = groups
        self.outputs = outputs
        self.activation = activation
        self.packed = packed
    }

    /// Floats of the kernel (every group's taps × inputs × outputs).
    var weightFloats: Int { geometry.kernelHeight * geometry.kernelWidth * (geometry.inChannels / groups) * geometry.outChannels }

    /// Floats of scratch a call on `g` (this conv's geometry, or rows of it) needs: one bordered image.
    static func scratchFloats(_ g: Kernels.Spatial) -> Int {
        bnk_grouped_scratch(Int32(g.inChannels), Int32(g.kernelHeight), Int32(g.kernelWidth), Int32(g.strideY), Int32(g.strideX),
                            Int32(g.dilationY), Int32(g.dilationX), Int32(g.outHeight), Int32(g.outWidth))
    }

    /// The conv over `batch` images of geometry `g` (`geometry`, or `geometry.rows(…)`), then the
    /// activation; with `only`, those groups' output channels alone (threads sharing a small map;
    /// even bounds where the groups are even in number, as groups of 4 outputs go in pairs; an
    /// element-wise activation).
    func run(_ x: UnsafePointer<Float>, batch: Int, _ g: Kernels.Spatial, only: Range<Int>? = nil, output y: UnsafeMutablePointer<Float>,
             scratch: UnsafeMutablePointer<Float>) {
        // The kernel applies ReLU and ReLU6 as it stores; the others go over the output after.
        let code = Kernels.fusedCode(activation).flatMap { $0 == Int32(BNK_ACT_SIGMOID) ? nil : $0 }
        let part = only ?? 0..<groups
        packed.withUnsafeBufferPointer { p in
            bnk_grouped_conv2d_groups(x, Int32(batch), Int32(g.inHeight), Int32(g.inWidth), Int32(g.inChannels), Int32(groups),
                                      Int32(g.kernelHeight), Int32(g.kernelWidth), Int32(g.strideY), Int32(g.strideX), Int32(g.dilationY),
                                      Int32(g.dilationX), Int32(g.padTop), Int32(g.padLeft), Int32(g.outHeight), Int32(g.outWidth),
                                      p.baseAddress!, Int32(outputs), code ?? Int32(BNK_ACT_LINEAR), Int32(part.lowerBound),
                                      Int32(part.upperBound), y, scratch)
        }
        guard code == nil else { return }
        if only == nil {
            Kernels.activate(y, count: batch * g.outHeight * g.outWidth * g.outChannels, channels: g.outChannels, kind: activation)
        } else {
            // An element-wise activation over each pixel's channels of these groups.
            let first = part.lowerBound * outputs, count = part.count * outputs
            for pixel in 0..<(batch * g.outHeight * g.outWidth) {
                Kernels.activate(y + pixel * g.outChannels + first, count: count, channels: count, kind: activation)
            }
        }
    }

    /// The version `run` uses under the current instruction-set cap: "avx512", "avx2" or "generic".
    var implementation: String { String(cString: bnk_grouped_isa(Int32(outputs))) }
}
