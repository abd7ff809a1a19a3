import CKernels
import ModelIR

/// A strided transposed convolution (U-Net's Conv2DTranspose 2×2/2 up, a decoder's 3×3/2 or 4×4/2),
/// as GEMM and scatter (col2im): a block of input rows times the kernel, its weights packed once
/// into panels (input channels × taps·outputs), gives each pixel's taps, which
/// `bnk_transposed_scatter` adds into the output pixels they reach. A call computes a range of
/// output rows, all of it: the rows a range of input rows "owns" (from the first output row of its
/// first input row), with every tap that lands there, reading the input rows above and below
/// where kernels overlap. Threads share a step by input rows and write disjoint output rows, each
/// row's taps added in the same order whatever the split: the values do not depend on it.
/// (Stride-1 transposed convs are planned as plain convs: GraphRewrites.transposedConvsAsConvs.)
struct TransposedConvolution {
    let geometry: Kernels.Spatial
    let activation: ActivationKind
    private let panels: Panels
    private let bias: [Float]?

    /// `kernel`: Keras's Conv2DTranspose layout (kh, kw, out, in).
    init(kernel: [Float], bias: Tensor?, geometry g: Kernels.Spatial, activation: ActivationKind) {
        let taps = g.kernelHeight * g.kernelWidth, columns = taps * g.outChannels
        panels = Panels(rows: g.inChannels, columns: columns, matrices: 1) { _, matrix in
            for t in 0..<taps {
                for o in 0..<g.outChannels {
                    for i in 0..<g.inChannels { matrix[i * columns + t * g.outChannels + o] = kernel[(t * g.outChannels + o) * g.inChannels + i] }
                }
            }
        }
        self.geometry = g
        self.activation = activation
        self.bias = bias?.values
    }

    /// Each input pixel's products: taps × output channels.
    private var columns: Int { geometry.kernelHeight * geometry.kernelWidth * geometry.outChannels }

    /// Input rows a GEMM takes at a time: their products stay within 256 KiB, in L2 when scattered.
    private var blockRows: Int { max(1, (1 << 16) / max(geometry.inWidth * columns, 1)) }

    /// Floats of scratch a call needs.
    var scratchFloats: Int { blockRows * geometry.inWidth * columns }

    /// Multiply-adds of one image.
    var multiplyAdds: Int { geometry.inHeight * geometry.inWidth * geometry.inChannels * columns }

    /// The output rows input rows `rows` own: from the first output row of the first one (0 for
    /// input row 0) to that of the row after them (the last output row for the last input row).
    func outputRows(_ rows: Range<Int>) -> Range<Int> {
        let g = geometry
        func boundary(_ row: Int) -> Int {
            row == 0 ? 0 : row == g.inHeight ? g.outHeight : min(max(row * g.strideY - g.padTop, 0), g.outHeight)
        }
        return boundary(rows.lowerBound)..<boundary(rows.upperBound)
    }

    /// The output rows `rows` of input rows own (`outputRows`), for one image: `x` and `y` the image's
    /// input and output.
    func run(_ x: UnsafePointer<Float>, inputRows rows: Range<Int>, _ y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let g = geometry, out = g.outChannels, owned = outputRows(rows)
        guard !owned.isEmpty else { return }
        let rowFloats = g.outWidth * out
        let start = y + owned.lowerBound * rowFloats
        Kernels.fill(start, pixels: owned.count * g.outWidth, channels: out, bias: bias)
        // The input rows with a tap in the owned rows: iy·sy + ky − pt in `owned` for some ky < kh.
        let lowest = owned.lowerBound + g.padTop - (g.kernelHeight - 1)
        let first = lowest <= 0 ? 0 : (lowest + g.strideY - 1) / g.strideY
        let last = min((owned.upperBound - 1 + g.padTop) / g.strideY + 1, g.inHeight)
        var block = first
        while block < last {
            let count = min(blockRows, last - block)
            Kernels.panelGEMM(input: x + block * g.inWidth * g.inChannels, rows: count * g.inWidth, inputs: g.inChannels,
                              panels: panels.pointer, bias: nil, units: columns, activation: .linear, output: scratch)
            bnk_transposed_scatter(scratch, Int32(block), Int32(block + count), Int32(g.inWidth), Int32(g.kernelHeight),
                                   Int32(g.kernelWidth), Int32(g.strideY), Int32(g.strideX), Int32(g.padTop), Int32(g.padLeft),
                                   Int32(out), y, Int32(g.outWidth), Int32(owned.lowerBound), Int32(owned.upperBound))
            block += count
        }
        Kernels.activate(start, count: owned.count * rowFloats, channels: out, kind: activation)
    }
}
