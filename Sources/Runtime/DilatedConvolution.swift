import CKernels
import ModelIR

/// A dilated convolution whose taps often fall in the zero border (DeepLab's ASPP: 3×3 convs at
/// rates 12, 24 and 36 over a 14×14 map, where a rate past the map leaves only the centre tap),
/// computed tap by tap over the output pixels that tap reaches inside the input only. For each tap
/// (ky, kx), the output rectangle whose input lies inside is fixed by the geometry; its pixels'
/// input vectors are gathered into a patch, multiplied by the tap's (c × out) kernel, prepacked in
/// panels, and added into the output, which starts as the bias. The same products as the conv
/// over the padded input without the zero ones; the sums in tap order (float32 rounding). A call
/// computes a range of output rows, so threads share a step by rows, each row's sums in the same
/// order whatever the split.
struct DilatedConvolution {
    let geometry: Kernels.Spatial
    let activation: ActivationKind
    private let bias: [Float]?
    private let taps: [(ky: Int, kx: Int, rows: Range<Int>, columns: Range<Int>, panels: Panels)]

    /// Output pixels, along one axis, whose input `o·stride − pad + k·dilation` lies in 0..<input.
    private static func reached(k: Int, stride: Int, dilation: Int, pad: Int, input: Int, output: Int) -> Range<Int> {
        let offset = k * dilation - pad
        // o·stride + offset >= 0 and o·stride + offset <= input − 1.
        let low = offset >= 0 ? 0 : (-offset + stride - 1) / stride
        let highInput = input - 1 - offset
        let high = highInput < 0 ? -1 : min(highInput / stride, output - 1)
        return low <= high ? low..<(high + 1) : 0..<0
    }

    /// The share of the conv's products that read inside the input (the rest multiply the border's zeros).
    static func insideShare(_ g: Kernels.Spatial) -> Double {
        var inside = 0
        for ky in 0..<g.kernelHeight {
            let rows = reached(k: ky, stride: g.strideY, dilation: g.dilationY, pad: g.padTop, input: g.inHeight, output: g.outHeight).count
            for kx in 0..<g.kernelWidth {
                inside += rows * reached(k: kx, stride: g.strideX, dilation: g.dilationX, pad: g.padLeft, input: g.inWidth,
                                         output: g.outWidth).count
            }
        }
        return Double(inside) / Double(max(g.kernelHeight * g.kernelWidth * g.outHeight * g.outWidth, 1))
    }

    /// Whether a conv is better computed this way: dilated (the GEMM paths then multiply every
    /// border zero, through im2col) with at most 90% of its products inside the input. One 3×3 conv
    /// to 256 channels, one thread, this way against im2col and the GEMM (alternating `bnrun
    /// --bench 5`, AMD Zen 4; the share inside in brackets): 16 × 16 × 256 at rate 8 (0.44) 2.1×
    /// faster, rate 6 (0.56) 1.7×; 28 × 28 × 256 at rate 12 (0.51) 1.9× (2.0× at AVX2);
    /// 64 × 64 × 128 at rate 12 (0.77) 1.2×, rate 6 (0.88) 1.08× (1.12× at AVX2), rate 3 (0.94) even.
    static func pays(_ g: Kernels.Spatial) -> Bool {
        (g.dilationY > 1 || g.dilationX > 1) && g.inChannels > 1 && insideShare(g) <= 0.9
    }

    /// `kernel`: Keras's Conv2D layout (kh, kw, c, out).
    init(kernel: UnsafePointer<Float>, bias: Tensor?, geometry g: Kernels.Spatial, activation: ActivationKind) {
        var taps: [(ky: Int, kx: Int, rows: Range<Int>, columns: Range<Int>, panels: Panels)] = []
        let tapFloats = g.inChannels * g.outChannels
        for ky in 0..<g.kernelHeight {
            let rows = Self.reached(k: ky, stride: g.strideY, dilation: g.dilationY, pad: g.padTop, input: g.inHeight, output: g.outHeight)
            for kx in 0..<g.kernelWidth {
                let columns = Self.reached(k: kx, stride: g.strideX, dilation: g.dilationX, pad: g.padLeft, input: g.inWidth,
                                           output: g.outWidth)
                guard !rows.isEmpty, !columns.isEmpty else { continue }
                let panels = Panels(kernel + (ky * g.kernelWidth + kx) * tapFloats, rows: g.inChannels, columns: g.outChannels)
                taps.append((ky, kx, rows, columns, panels))
            }
        }
        self.geometry = g
        self.activation = activation
        self.bias = bias?.values
        self.taps = taps
    }

    /// Multiply-adds of one image (those inside the input).
    var multiplyAdds: Int { taps.reduce(0) { $0 + $1.rows.count * $1.columns.count } * geometry.inChannels * geometry.outChannels }

    /// Output rows a gather takes at a time: the patch and its products within 256 KiB each.
    private var chunkRows: Int { max(1, (1 << 16) / max(geometry.outWidth * max(geometry.inChannels, geometry.outChannels), 1)) }

    /// Floats of scratch a call needs: a patch and its products.
    var scratchFloats: Int { chunkRows * geometry.outWidth * (geometry.inChannels + geometry.outChannels) }

    /// Output rows `rows` of one image (`x` and `y` the image's input and output).
    func run(_ x: UnsafePointer<Float>, rows: Range<Int>, _ y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let g = geometry, c = g.inChannels, n = g.outChannels
        guard !rows.isEmpty else { return }
        let start = y + rows.lowerBound * g.outWidth * n, count = rows.count * g.outWidth
        Kernels.fill(start, pixels: count, channels: n, bias: bias)
        let patch = scratch, products = scratch + chunkRows * g.outWidth * c
        for tap in taps {
            let low = max(tap.rows.lowerBound, rows.lowerBound), high = min(tap.rows.upperBound, rows.upperBound)
            guard low < high else { continue }
            let reached = low..<high
            let width = tap.columns.count
            var first = reached.lowerBound
            while first < reached.upperBound {
                let last = min(first + chunkRows, reached.upperBound)
                var p = 0
                for oy in first..<last {
                    let iy = oy * g.strideY - g.padTop + tap.ky * g.dilationY
                    for ox in tap.columns {
                        let ix = ox * g.strideX - g.padLeft + tap.kx * g.dilationX
                        (patch + p * c).update(from: x + (iy * g.inWidth + ix) * c, count: c)
                        p += 1
                    }
                }
                Kernels.panelGEMM(input: patch, rows: p, inputs: c, panels: tap.panels.pointer, bias: nil, units: n, activation: .linear,
                                  output: products)
                for (r, oy) in (first..<last).enumerated() {
                    let target = y + (oy * g.outWidth + tap.columns.lowerBound) * n
                    bnk_add(target, products + r * width * n, target, width * n, Int32(BNK_ACT_LINEAR))
                }
                first = last
            }
        }
        Kernels.activate(start, count: count * n, channels: n, kind: activation)
    }
}
