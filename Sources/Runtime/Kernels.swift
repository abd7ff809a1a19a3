import CKernels
import Foundation

/// The CPU kernels. Tensors are batches of samples laid out contiguously,
/// channels (the last axis) fastest: (N, features) or (N, H, W, C).
/// Dense, Conv2D, depthwise and pooling call the SIMD kernels in CKernels (grouped
/// convolutions through `GroupedConvolution`); padding and some element-wise steps are here.
/// Only this file and the executor touch raw pointers.
package enum Kernels {
    /// The GEMM epilogue code for an activation (linear, ReLU, ReLU6, sigmoid), or nil when it runs separately.
    static func fusedCode(_ kind: ActivationKind) -> Int32? {
        elementwiseCode(kind).flatMap { $0 <= Int32(BNK_ACT_SIGMOID) ? $0 : nil }
    }

    /// The code of an activation the vectorized element-wise kernels compute (`bnk_activate`, `bnk_add`).
    static func elementwiseCode(_ kind: ActivationKind) -> Int32? {
        switch kind {
        case .linear: Int32(BNK_ACT_LINEAR)
        case .relu: Int32(BNK_ACT_RELU)
        case .relu6: Int32(BNK_ACT_RELU6)
        case .sigmoid: Int32(BNK_ACT_SIGMOID)
        case .swish: Int32(BNK_ACT_SWISH)
        case .hardSwish: Int32(BNK_ACT_HARD_SWISH)
        case .gelu: Int32(BNK_ACT_GELU)
        default: nil
        }
    }

    /// `y = act(x)` for `count` values (softmax over rows of `channels`).
    static func activate(from x: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>, count: Int, channels: Int, kind: ActivationKind) {
        if let code = elementwiseCode(kind) {
            bnk_activate(x, y, count, code)
        } else {
            y.update(from: x, count: count)
            activate(y, count: count, channels: channels, kind: kind)
        }
    }

    /// `y = act(a + b)` for `count` values.
    static func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int, channels: Int,
                    activation: ActivationKind) {
        bnk_add(a, b, y, count, elementwiseCode(activation) ?? Int32(BNK_ACT_LINEAR))
        if elementwiseCode(activation) == nil { activate(y, count: count, channels: channels, kind: activation) }
    }

    /// Squeeze-and-excitation's product: every pixel's channels times the sample's `channels` scales.
    static func scaleChannels(_ x: UnsafePointer<Float>, scales: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int,
                              pixels: Int, channels: Int) {
        for b in 0..<batch {
            bnk_scale_channels(x + b * pixels * channels, scales + b * channels, y + b * pixels * channels, pixels, channels)
        }
    }

    /// The version the element-wise kernels run under the current cap: "avx512", "avx2" or "generic".
    package static var elementwiseImplementation: String { String(cString: bnk_elementwise_isa()) }

    /// Dense through the SIMD GEMM: `output = act(input · kernel + bias)`.
    /// With `panels` (the kernel prepacked), the prepacked GEMM instead (no sparse-input path).
    static func denseGEMM(input: UnsafePointer<Float>, rows: Int, inputs: Int, kernel: UnsafePointer<Float>, panels: UnsafePointer<Float>? = nil,
                          bias: UnsafePointer<Float>?, units: Int, activation: ActivationKind, output: UnsafeMutablePointer<Float>) {
        // The prepacked GEMM applies every element-wise activation itself (as conv2dGEMM's does).
        if let panels {
            return panelGEMM(input: input, rows: rows, inputs: inputs, panels: panels, bias: bias, units: units, activation: activation,
                             output: output)
        }
        let code = fusedCode(activation)
        bnk_dense(Int32(rows), Int32(units), Int32(inputs), input, Int32(inputs), kernel, bias, output, Int32(units),
                  code ?? Int32(BNK_ACT_LINEAR))
        if code == nil { activate(output, count: rows * units, channels: units, kind: activation) }
    }

    /// `output = act(input · kernel + bias)` with the kernel (inputs × units) prepacked: the GEMM
    /// applies every element-wise activation as it stores (others after).
    /// With `residual` (rows × units), `act(input · kernel + bias + residual)`.
    static func panelGEMM(input: UnsafePointer<Float>, rows: Int, inputs: Int, panels: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                          residual: UnsafePointer<Float>? = nil, units: Int, activation: ActivationKind, output: UnsafeMutablePointer<Float>) {
        let code = elementwiseCode(activation)
        bnk_gemm_panels(Int32(rows), Int32(units), Int32(inputs), input, Int32(inputs), panels, bias, residual, output, Int32(units),
                        code ?? Int32(BNK_ACT_LINEAR))
        if code == nil { activate(output, count: rows * units, channels: units, kind: activation) }
    }

    /// Columns `columns` of `output = act(input · kernel + bias)` (rows × units, kernel inputs × units),
    /// so threads can share one product; false (nothing done) for activations that need whole rows.
    /// `then`: the weights the caller reads next, whose first panel the last one prefetches when
    /// the weights stream (only prefetches change).
    static func gemmColumns(input: UnsafePointer<Float>, rows: Int, inputs: Int, kernel: UnsafePointer<Float>,
                            panels: UnsafePointer<Float>? = nil, bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>? = nil,
                            units: Int, columns: Range<Int>, activation: ActivationKind, output: UnsafeMutablePointer<Float>,
                            then: NextWeights? = nil) {
        let code = fusedCode(activation)
        let n0 = columns.lowerBound
        if let panels {
            precondition(n0 % panelWidth == 0, "a column range of panels starts at a panel")
            bnk_gemm_panels_part(Int32(rows), Int32(columns.count), Int32(inputs), input, Int32(inputs), panels + n0 * inputs,
                                 bias.map { $0 + n0 }, residual.map { $0 + n0 }, output + n0, Int32(units),
                                 code ?? Int32(BNK_ACT_LINEAR), Int32(units),
                                 then?.pointer(after: columns, of: units, in: panels, depth: inputs))
        } else {
            precondition(residual == nil, "a residual is added by the prepacked GEMM only")
            bnk_gemm_strided(Int32(rows), Int32(columns.count), Int32(inputs), input, Int32(inputs), kernel + n0, Int32(units),
                             bias.map { $0 + n0 }, output + n0, Int32(units), code ?? Int32(BNK_ACT_LINEAR))
        }
        if code == nil {
            for row in 0..<rows { activate(output + row * units + n0, count: columns.count, channels: columns.count, kind: activation) }
        }
    }

    /// Output channels `columns` of a Conv2D (groups 1, no horizontal dilation) by the indirect
    /// GEMM, so threads can share one conv's channels; false (nothing done) where this machine
    /// has no indirect path. `scratch` holds `patchScratch` floats. `then` as for `gemmColumns`.
    static func conv2dColumns(input: UnsafePointer<Float>, batch: Int, _ g: Spatial, kernel: UnsafePointer<Float>,
                              panels: UnsafePointer<Float>? = nil, bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>? = nil,
                              columns: Range<Int>, activation: ActivationKind, output: UnsafeMutablePointer<Float>,
                              scratch: UnsafeMutablePointer<Float>, then: NextWeights? = nil) -> Bool {
        let code = fusedCode(activation)
        let depth = g.kernelHeight * g.kernelWidth * g.inChannels
        let then = panels.flatMap { then?.pointer(after: columns, of: g.outChannels, in: $0, depth: depth) }
        let done = bnk_conv2d_indirect_columns(input, Int32(batch), Int32(g.inHeight), Int32(g.inWidth), Int32(g.inChannels),
                                               Int32(g.kernelHeight), Int32(g.kernelWidth), Int32(g.strideY), Int32(g.strideX),
                                               Int32(g.dilationY), Int32(g.padTop), Int32(g.padLeft), Int32(g.outHeight), Int32(g.outWidth),
                                               kernel, panels, bias, residual, Int32(g.outChannels), Int32(columns.lowerBound), Int32(columns.count),
                                               code ?? Int32(BNK_ACT_LINEAR), output, scratch, then) != 0
        if done, code == nil {
            for row in 0..<(batch * g.outHeight * g.outWidth) {
                activate(output + row * g.outChannels + columns.lowerBound, count: columns.count, channels: columns.count, kind: activation)
            }
        }
        return done
    }

    /// What a part of a step split by output columns reads after its own weights, for its last
    /// panel to prefetch the first of them: the columns after its own (the next part of the
    /// worker's share), or a panel of the next step (the first of the worker's share there).
    enum NextWeights {
        case nextColumns
        case panel(UnsafePointer<Float>)

        /// The panel to prefetch after `columns` of a product `units` wide whose panels (`depth`
        /// rows each) start at `panels`; nil past the last column.
        func pointer(after columns: Range<Int>, of units: Int, in panels: UnsafePointer<Float>, depth: Int) -> UnsafePointer<Float>? {
            switch self {
            case .nextColumns: columns.upperBound < units ? panels + columns.upperBound * depth : nil
            case let .panel(first): first
            }
        }
    }

    /// The fewest output columns of a worker's share when a conv over few pixels is split by
    /// columns: one block of the AVX-512 tile (64), else two panels (32). (`Executor.sharesColumns`.)
    static var fewestColumnsPerWorker: Int { strcmp(bnk_gemm_isa(), "avx512") == 0 ? 64 : 32 }

    /// Whether this machine has the indirect convolution (AVX-512 or AVX2 + FMA under the cap).
    static var hasIndirectConvolution: Bool { gemmImplementation != "generic" }

    /// Whether an activation applies value by value (so a block of columns can take it alone).
    static func isElementwise(_ kind: ActivationKind) -> Bool {
        if case .softmax = kind { return false }
        return true
    }

    /// Whether a conv is a plain product over pixels (1×1, stride 1, no padding).
    static func isPointwise(_ g: Spatial) -> Bool {
        g.kernelHeight == 1 && g.kernelWidth == 1 && g.strideY == 1 && g.strideX == 1
            && g.padTop == 0 && g.padLeft == 0 && g.outHeight == g.inHeight && g.outWidth == g.inWidth
    }

    /// Conv2D (groups = 1) as im2col + GEMM, one image at a time; a 1×1,
    /// stride-1, unpadded conv multiplies the input directly.
    /// With `residual` (shaped like the output; only with `panels`), it is added before the
    /// activation: a following Add fused into the conv, the same sums bit for bit.
    static func conv2dGEMM(input: UnsafePointer<Float>, batch: Int, _ g: Spatial, kernel: UnsafePointer<Float>,
                           panels: UnsafePointer<Float>? = nil, bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>? = nil,
                           activation: ActivationKind, output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let code = fusedCode(activation) ?? Int32(BNK_ACT_LINEAR)
        let pixels = g.outHeight * g.outWidth
        let depth = g.kernelHeight * g.kernelWidth * g.inChannels
        let inImage = g.inHeight * g.inWidth * g.inChannels
        let pointwise = g.kernelHeight == 1 && g.kernelWidth == 1 && g.strideY == 1 && g.strideX == 1
            && g.padTop == 0 && g.padLeft == 0 && g.outHeight == g.inHeight && g.outWidth == g.inWidth
        precondition(residual == nil || panels != nil, "a residual is added by the prepacked GEMM only")
        if residual == nil, g.inChannels == 1, fusedCode(activation) != Int32(BNK_ACT_SIGMOID) {
            // A grayscale input: direct convolution, no patch matrix (when this CPU has the fast path).
            var done = true
            for b in 0..<batch where done {
                done = bnk_conv2d_single_channel(input + b * inImage, Int32(g.inHeight), Int32(g.inWidth), Int32(g.kernelHeight),
                                                 Int32(g.kernelWidth), Int32(g.strideY), Int32(g.strideX), Int32(g.dilationY),
                                                 Int32(g.dilationX), Int32(g.padTop), Int32(g.padLeft), Int32(g.outHeight),
                                                 Int32(g.outWidth), kernel, bias, Int32(g.outChannels), code, 0,
                                                 output + b * pixels * g.outChannels) != 0
            }
            if done {
                if fusedCode(activation) == nil {
                    activate(output, count: batch * pixels * g.outChannels, channels: g.outChannels, kind: activation)
                }
                return
            }
        }
        if residual == nil, g.outChannels <= Int(BNK_FEW_OUTPUTS), g.inChannels >= 16 {
            // A few output channels (a segmentation head): direct dot products, input channels in the
            // vector lanes, rather than 16-wide column panels that would compute mostly nothing.
            var done = true
            for b in 0..<batch where done {
                done = bnk_conv2d_few_outputs(input + b * inImage, Int32(g.inHeight), Int32(g.inWidth), Int32(g.inChannels),
                                              Int32(g.kernelHeight), Int32(g.kernelWidth), Int32(g.strideY), Int32(g.strideX),
                                              Int32(g.dilationY), Int32(g.dilationX), Int32(g.padTop), Int32(g.padLeft),
                                              Int32(g.outHeight), Int32(g.outWidth), kernel, bias, Int32(g.outChannels),
                                              output + b * pixels * g.outChannels) != 0
            }
            if done {
                activate(output, count: batch * pixels * g.outChannels, channels: g.outChannels, kind: activation)
                return
            }
        }
        // The product, with the kernel's prepacked panels when the plan made them (which also
        // apply sigmoid, swish and hard-swish, chunk by chunk while the chunk is in cache).
        let panelCode = elementwiseCode(activation)
        var activated = fusedCode(activation) != nil
        func gemm(_ rows: Int, _ a: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>) {
            if let panels {
                bnk_gemm_panels(Int32(rows), Int32(g.outChannels), Int32(depth), a, Int32(depth), panels, bias,
                                residual.map { $0 + (c - output) }, c, Int32(g.outChannels), panelCode ?? code)
                activated = activated || panelCode != nil
            } else {
                bnk_gemm(Int32(rows), Int32(g.outChannels), Int32(depth), a, Int32(depth), kernel, bias, c, Int32(g.outChannels), code)
            }
        }
        if pointwise {
            gemm(batch * pixels, input, output)
        } else if g.dilationX == 1,
                  bnk_conv2d_indirect_columns(input, Int32(batch), Int32(g.inHeight), Int32(g.inWidth), Int32(g.inChannels),
                                              Int32(g.kernelHeight), Int32(g.kernelWidth), Int32(g.strideY), Int32(g.strideX),
                                              Int32(g.dilationY), Int32(g.padTop), Int32(g.padLeft), Int32(g.outHeight), Int32(g.outWidth),
                                              kernel, panels, bias, residual, Int32(g.outChannels), 0, Int32(g.outChannels), code, output,
                                              scratch, nil) != 0 {
            // Done as an indirect GEMM, reading the input in place (no patch matrix).
        } else {
            // The patches of several images in one GEMM: whole row blocks for the
            // microkernel instead of a ragged last block per image.
            let group = imagesPerPatchMatrix(g, batch: batch)
            for first in stride(from: 0, to: batch, by: group) {
                let count = min(group, batch - first)
                for i in 0..<count {
                    bnk_im2col(input + (first + i) * inImage, Int32(g.inHeight), Int32(g.inWidth), Int32(g.inChannels),
                               Int32(g.kernelHeight), Int32(g.kernelWidth), Int32(g.strideY), Int32(g.strideX), Int32(g.dilationY),
                               Int32(g.dilationX), Int32(g.padTop), Int32(g.padLeft), Int32(g.outHeight), Int32(g.outWidth),
                               scratch + i * pixels * depth)
                }
                gemm(count * pixels, scratch, output + first * pixels * g.outChannels)
            }
        }
        if !activated {
            activate(output, count: batch * pixels * g.outChannels, channels: g.outChannels, kind: activation)
        }
    }

    /// Caps the instruction sets the kernels use (2: AVX-512 where the CPU has it,
    /// the default; 1: AVX2 + FMA; 0: portable C), so tests can check every path
    /// this machine can run. Executors planned afterwards follow it.
    package static func limitInstructionSet(_ level: Int) { bnk_limit_isa(Int32(level)) }

    /// The GEMM implementation in use: "avx512", "avx2", "neon" (arm64) or "generic".
    package static var gemmImplementation: String { String(cString: bnk_gemm_isa()) }

    /// Whether `conv2dThenMaxPool` can run this conv: a one-channel input and an
    /// activation the direct kernel applies, on a CPU that has that kernel.
    static func canFuseMaxPool(_ g: Spatial, groups: Int, activation: ActivationKind) -> Bool {
        guard g.inChannels == 1, groups == 1, let code = fusedCode(activation), code != Int32(BNK_ACT_SIGMOID) else { return false }
        return bnk_conv2d_single_channel_available(code) != 0
    }

    /// A one-channel conv, its activation and a 2×2 stride-2 max pooling in one pass
    /// (the conv's output is never stored); only when `canFuseMaxPool` said so.
    static func conv2dThenMaxPool(input: UnsafePointer<Float>, batch: Int, _ g: Spatial, kernel: UnsafePointer<Float>,
                                  bias: UnsafePointer<Float>?, activation: ActivationKind, output: UnsafeMutablePointer<Float>) {
        let code = fusedCode(activation)!
        let inImage = g.inHeight * g.inWidth
        let outImage = (g.outHeight / 2) * (g.outWidth / 2) * g.outChannels
        for b in 0..<batch {
            let done = bnk_conv2d_single_channel(input + b * inImage, Int32(g.inHeight), Int32(g.inWidth), Int32(g.kernelHeight),
                                                 Int32(g.kernelWidth), Int32(g.strideY), Int32(g.strideX), Int32(g.dilationY),
                                                 Int32(g.dilationX), Int32(g.padTop), Int32(g.padLeft), Int32(g.outHeight),
                                                 Int32(g.outWidth), kernel, bias, Int32(g.outChannels), code, 1,
                                                 output + b * outImage)
            precondition(done != 0, "conv2dThenMaxPool planned on a machine without the direct kernel")
        }
    }

    /// Whether `winogradConv3x3` computes this conv: 3×3, stride 1, no dilation, no
    /// groups, an activation it can apply, and enough channels that the
    /// transforms cost less than the multiplications they save.
    static func canUseWinograd(_ g: Spatial, groups: Int, activation: ActivationKind) -> Bool {
        guard let code = fusedCode(activation), code != Int32(BNK_ACT_SIGMOID) else { return false }
        return canUseWinograd(g, groups: groups)
    }

    /// Whether Winograd runs this conv with an activation applied after it (not fused with a pooling).
    /// Maps of 81 pixels or more, and smaller ones of whole 2×2 tiles only (even sides, from 36
    /// pixels). 9×9 maps (25 tiles for 81 pixels): ResNet50 at 288×288, the two 512 → 512 convs of
    /// layer4 that take it, 225-228 → 192-195 ms at batch 1 and 217-221 → 143-153 at batch 16 in
    /// profiled runs (AMD Zen 4, AVX-512, one thread); Inception v3 at 96×96 (Mixed_5b-d's 3×3
    /// convs), the network 1.00-1.02× at batch 1 and 1.04-1.05× at batch 16 at both levels. On a small map the transformed kernel, 16/9 the size of the kernel, is read for
    /// few tiles; measured per layer on AMD Zen 4 (one thread, AVX-512, the three convs of a stage
    /// together): ResNet50 at 96×96, 6×6 maps at 256 channels (9 whole tiles), Winograd took 17%
    /// less time than the direct conv at batch 1 and 45% less at batch 16; ResNet50 at 224×224,
    /// 7×7 maps at 512 channels (16 tiles for 49 pixels, the last row and column of tiles half
    /// outside), 5% more at batch 1 and 30% less at batch 16, so odd small maps keep the direct
    /// conv (the choice depends on the geometry only: an image's outputs do not depend on the
    /// batch or the threads). Few tiles on several threads are split by output channels
    /// (`bnk_conv3x3_winograd_columns`), not by rows of tiles.
    static func canUseWinograd(_ g: Spatial, groups: Int) -> Bool {
        let pixels = g.outHeight * g.outWidth
        let wholeTiles = g.outHeight % 2 == 0 && g.outWidth % 2 == 0
        return (pixels >= 81 || (pixels >= 36 && wholeTiles)) && g.kernelHeight == 3 && g.kernelWidth == 3 && g.strideY == 1
            && g.strideX == 1 && g.dilationY == 1 && g.dilationX == 1 && groups == 1 && g.inChannels >= 8 && g.outChannels >= 8
    }

    /// The Winograd F(2×2, 3×3) kernel transform, U = G g Gᵀ, computed in Double from
    /// the Keras kernel (3, 3, cin, cout), as 16 cin × cout matrices, each stored as GEMM panels.
    static func winogradKernel(_ kernel: UnsafePointer<Float>, inChannels cin: Int, outChannels cout: Int) -> Panels {
        let G: [[Double]] = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
        let size = cin * cout
        var sums = [Double](repeating: 0, count: size)
        return Panels(rows: cin, columns: cout, matrices: 16) { position, matrix in
            let xi = position / 4, nu = position % 4
            // Σ over the taps (a, b), in that order, of G[xi][a] · g(a, b) · G[nu][b], per (c, o).
            for i in 0..<size { sums[i] = 0 }
            for a in 0..<3 {
                for b in 0..<3 {
                    let tap = kernel + (a * 3 + b) * size, left = G[xi][a], right = G[nu][b]
                    for i in 0..<size { sums[i] += left * Double(tap[i]) * right }
                }
            }
            for i in 0..<size { matrix[i] = Float(sums[i]) }
        }
    }

    /// Columns per GEMM panel: column ranges of prepacked weights start at multiples of it.
    static let panelWidth = Int(BNK_PANEL)


    static func winogradScratch(_ g: Spatial) -> Int { bnk_winograd_scratch(Int32(g.inChannels), Int32(g.outChannels)) }

    /// A 3×3 stride-1 conv (see `canUseWinograd`) with its bias and activation, and a
    /// 2×2 stride-2 max pooling when `pool` is set; `scratch` holds `winogradScratch` floats.
    static func winogradConv3x3(input: UnsafePointer<Float>, batch: Int, _ g: Spatial, transformed: UnsafePointer<Float>,
                                bias: UnsafePointer<Float>?, activation: ActivationKind, pool: Bool,
                                output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        // The epilogue applies linear, ReLU and ReLU6; others (not with a pooling) come after.
        let code = fusedCode(activation)
        let epilogue = code == nil || code == Int32(BNK_ACT_SIGMOID) ? Int32(BNK_ACT_LINEAR) : code!
        precondition(!pool || epilogue == code, "a pooled Winograd conv takes linear, ReLU or ReLU6")
        bnk_conv3x3_winograd(input, Int32(batch), Int32(g.inHeight), Int32(g.inWidth), Int32(g.inChannels), Int32(g.outHeight),
                             Int32(g.outWidth), Int32(g.padTop), Int32(g.padLeft), transformed, bias, Int32(g.outChannels),
                             epilogue, pool ? 1 : 0, output, scratch)
        if epilogue != code {
            activate(output, count: batch * g.outHeight * g.outWidth * g.outChannels, channels: g.outChannels, kind: activation)
        }
    }

    /// Output channels `columns` (starting at a multiple of `panelWidth`) of `winogradConv3x3`
    /// without a pooling, each exactly as the whole conv computes it; `activation` element-wise.
    static func winogradConv3x3Columns(input: UnsafePointer<Float>, batch: Int, _ g: Spatial, transformed: UnsafePointer<Float>,
                                       bias: UnsafePointer<Float>?, activation: ActivationKind, columns: Range<Int>,
                                       output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
                                       then: UnsafePointer<Float>? = nil) {
        precondition(columns.lowerBound % panelWidth == 0 && isElementwise(activation), "Winograd columns on a panel, element-wise")
        let code = fusedCode(activation)
        let epilogue = code == nil || code == Int32(BNK_ACT_SIGMOID) ? Int32(BNK_ACT_LINEAR) : code!
        bnk_conv3x3_winograd_columns(input, Int32(batch), Int32(g.inHeight), Int32(g.inWidth), Int32(g.inChannels),
                                     Int32(g.outHeight), Int32(g.outWidth), Int32(g.padTop), Int32(g.padLeft), transformed, bias,
                                     Int32(g.outChannels), Int32(columns.lowerBound), Int32(columns.count), epilogue, 0, output,
                                     scratch, then)
        if epilogue != code {
            for pixel in 0..<batch * g.outHeight * g.outWidth {
                let row = output + pixel * g.outChannels + columns.lowerBound
                activate(row, count: columns.count, channels: columns.count, kind: activation)
            }
        }
    }

    /// How many images' patch matrices `conv2dGEMM` builds at once: up to 512 KiB of them.
    static func imagesPerPatchMatrix(_ g: Spatial, batch: Int) -> Int {
        let perImage = max(1, g.outHeight * g.outWidth * g.kernelHeight * g.kernelWidth * g.inChannels)
        return max(1, min(batch, (128 * 1024) / perImage))
    }

    /// Scratch floats `conv2dGEMM` needs for a batch (for either of its ways).
    static func patchScratch(_ g: Spatial, batch: Int) -> Int {
        let patches = imagesPerPatchMatrix(g, batch: batch) * g.outHeight * g.outWidth * g.kernelHeight * g.kernelWidth * g.inChannels
        let bordered = bnk_conv2d_indirect_scratch(Int32(batch), Int32(g.inChannels), Int32(g.kernelHeight), Int32(g.kernelWidth),
                                                   Int32(g.strideY), Int32(g.strideX), Int32(g.dilationY), Int32(g.outHeight),
                                                   Int32(g.outWidth))
        return max(patches, bordered)
    }

    /// Geometry of a spatial op on one image.
    struct Spatial {
        var inHeight, inWidth, inChannels: Int
        var outHeight, outWidth, outChannels: Int
        var kernelHeight, kernelWidth: Int
        var strideY, strideX: Int
        var dilationY, dilationX: Int
        var padTop, padLeft: Int

        /// This window over a zero-padded input, as the same window over the unpadded input
        /// (`height` × `width`) with the padding added to its own: taps in the border read nothing.
        func unpadded(height: Int, width: Int, top: Int, left: Int) -> Kernels.Spatial {
            var g = self
            g.inHeight = height
            g.inWidth = width
            g.padTop += top
            g.padLeft += left
            return g
        }

        /// A 1-D window (one row in, one row out: Keras's Conv1D over (steps, channels)) turned to
        /// run down a column: the same memory, (1, steps, c) read as (steps, 1, c), the kernel's
        /// (1, k, c, out) as (k, 1, c, out), so the steps are rows that threads can share; any
        /// other window as it is.
        var alongRows: Kernels.Spatial {
            guard inHeight == 1, outHeight == 1, kernelHeight == 1, padTop == 0, inWidth > 1 else { return self }
            return Kernels.Spatial(inHeight: inWidth, inWidth: 1, inChannels: inChannels, outHeight: outWidth, outWidth: 1,
                                   outChannels: outChannels, kernelHeight: kernelWidth, kernelWidth: 1, strideY: strideX, strideX: 1,
                                   dilationY: dilationX, dilationX: 1, padTop: padLeft, padLeft: 0)
        }
    }

    /// Depthwise 2-D convolution, kernel (kh, kw, in, dm); output channel c·dm + m; then the
    /// activation (ReLU and ReLU6 as the outputs are stored, others after). `reluInput`: each
    /// input value read through a ReLU (the conv of the ReLU's output, the same values).
    /// `streamed`: whether the input comes from beyond L2, so the row kernels prefetch the rows
    /// ahead (by default: when this call's input is over `depthwisePrefetchFloats`).
    static func depthwiseConv2d(input: UnsafePointer<Float>, batch: Int, _ g: Spatial, multiplier: Int,
                                kernel: UnsafePointer<Float>, bias: UnsafePointer<Float>?, activation: ActivationKind = .linear,
                                reluInput: Bool = false, output: UnsafeMutablePointer<Float>, streamed: Bool? = nil) {
        let inImage = g.inHeight * g.inWidth * g.inChannels, outImage = g.outHeight * g.outWidth * g.outChannels
        // The element-wise activations are applied by the kernel, row by row; others (softmax…) after.
        let code = elementwiseCode(activation)
        let prefetch = streamed ?? (batch * inImage > depthwisePrefetchFloats) ? Int32(BNK_DW_PREFETCH) : 0
        for b in 0..<batch {
            bnk_depthwise_conv2d(input + b * inImage, Int32(g.inHeight), Int32(g.inWidth), Int32(g.inChannels), Int32(multiplier),
                                 Int32(g.kernelHeight), Int32(g.kernelWidth), Int32(g.strideY), Int32(g.strideX), Int32(g.dilationY),
                                 Int32(g.dilationX), Int32(g.padTop), Int32(g.padLeft), Int32(g.outHeight), Int32(g.outWidth),
                                 kernel, bias, output + b * outImage,
                                 (code ?? Int32(BNK_ACT_LINEAR)) | (reluInput ? Int32(BNK_DW_RELU_INPUT) : 0) | prefetch)
        }
        if code == nil {
            activate(output, count: batch * outImage, channels: g.outChannels, kind: activation)
        }
    }

    /// The input floats (all images of one call) above which `depthwiseConv2d` asks the AVX-512 and
    /// AVX2 row kernels to prefetch the rows ahead (BNK_DW_PREFETCH): 1 MiB, the L2 of the AMD Zen 4
    /// measured. A smaller input was just written by the step (or strip) before and is still in
    /// L2, where the prefetches only take load slots; a batch of larger maps (MobileNetV2 96's
    /// standalone depthwise convs at batch 16) comes from L3, where they pay.
    static let depthwisePrefetchFloats = 1 << 18

    /// The version `depthwiseConv2d` runs under the current cap: "avx512", "avx2" or "generic".
    package static var depthwiseImplementation: String { String(cString: bnk_depthwise_isa()) }

    /// Max or average pooling; average divides by the pixels inside the image.
    static func pool2d(input: UnsafePointer<Float>, batch: Int, _ g: Spatial, isMax: Bool, output: UnsafeMutablePointer<Float>) {
        let inImage = g.inHeight * g.inWidth * g.inChannels, outImage = g.outHeight * g.outWidth * g.inChannels
        for b in 0..<batch {
            bnk_pool2d(input + b * inImage, Int32(g.inHeight), Int32(g.inWidth), Int32(g.inChannels), Int32(g.kernelHeight),
                       Int32(g.kernelWidth), Int32(g.strideY), Int32(g.strideX), Int32(g.padTop), Int32(g.padLeft),
                       Int32(g.outHeight), Int32(g.outWidth), isMax ? 1 : 0, output + b * outImage)
        }
    }

    /// Mean or max over all pixels of each image (a mean in `BNK_POOL_BLOCK` blocks: the values of
    /// `globalPoolBlocks` then `globalPoolCombine`).
    static func globalPool(input: UnsafePointer<Float>, batch: Int, pixels: Int, channels: Int, isMax: Bool,
                           output: UnsafeMutablePointer<Float>) {
        for b in 0..<batch {
            bnk_global_pool(input + b * pixels * channels, Int32(pixels), Int32(channels), isMax ? 1 : 0, output + b * channels)
        }
    }

    /// Blocks of pixels of a global pooling per image (`BNK_POOL_BLOCK` pixels each, the last the rest).
    static func globalPoolBlocks(pixels: Int) -> Int { Int(bnk_global_pool_block_count(Int32(pixels))) }

    /// Blocks `blocks` (numbered over the batch: image b's are b · globalPoolBlocks(pixels)...)
    /// of a global pooling, each block's sums (or maxima) over its pixels into `partial` (block i
    /// at partial + i · channels), for `globalPoolCombine`.
    static func globalPoolBlocks(input: UnsafePointer<Float>, pixels: Int, channels: Int, blocks: Range<Int>, isMax: Bool,
                                 partial: UnsafeMutablePointer<Float>) {
        let each = globalPoolBlocks(pixels: pixels)
        var block = blocks.lowerBound
        while block < blocks.upperBound {
            let image = block / each, end = min(blocks.upperBound, (image + 1) * each)
            bnk_global_pool_blocks(input + image * pixels * channels, Int32(pixels), Int32(channels), Int32(block - image * each),
                                   Int32(end - block), isMax ? 1 : 0, partial + image * each * channels)
            block = end
        }
    }

    /// Each image's pooled values from all of its blocks' (`globalPoolBlocks`): the values of
    /// `globalPool` bit for bit.
    static func globalPoolCombine(partial: UnsafePointer<Float>, batch: Int, pixels: Int, channels: Int, isMax: Bool,
                                  output: UnsafeMutablePointer<Float>) {
        let each = globalPoolBlocks(pixels: pixels)
        for b in 0..<batch {
            bnk_global_pool_combine(partial + b * each * channels, Int32(pixels), Int32(channels), isMax ? 1 : 0, output + b * channels)
        }
    }

    /// Copies each image into a larger one filled with `value` (zero padding; −∞ before a max pooling).
    static func zeroPad(input: UnsafePointer<Float>, batch: Int, height: Int, width: Int, channels: Int,
                        top: Int, left: Int, outHeight: Int, outWidth: Int, value: Float = 0, output: UnsafeMutablePointer<Float>) {
        output.update(repeating: value, count: batch * outHeight * outWidth * channels)
        for b in 0..<batch {
            for y in 0..<height {
                let source = input + ((b * height + y) * width) * channels
                let target = output + ((b * outHeight + y + top) * outWidth + left) * channels
                target.update(from: source, count: width * channels)
            }
        }
    }

    /// `y[r, c] = activation(x[r, c] * scale[c] + shift[c])` (a multiply, then an add: two
    /// roundings, as Keras's Rescaling and Normalization layers compute). Few channels (an image's three) go
    /// through scale and shift repeated to 16 × channels values, so the loop runs over whole
    /// vectors: a loop over each pixel's three channels took 1.2 ns a value (EfficientNetB0's
    /// two input layers, 0.34 ms of 17 per 224×224 image, AMD Zen 4).
    static func affine(from x: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>, count: Int, channels: Int,
                       scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, activation: ActivationKind = .linear) {
        guard channels > 0, count > 0 else { return }
        if channels >= 16 {
            // One vectorized pass, the activation applied as each value is stored (when the
            // element-wise kernels compute it; else after, over the rows just written).
            let code = elementwiseCode(activation)
            bnk_affine(x, scale, shift, y, count / channels, channels, code ?? Int32(BNK_ACT_LINEAR))
            if code == nil { activate(y, count: count, channels: channels, kind: activation) }
            return
        }
        let period = channels * 16
        var pattern = [Float](repeating: 0, count: 2 * period)
        for j in 0..<period {
            pattern[j] = scale[j % channels]
            pattern[period + j] = shift[j % channels]
        }
        pattern.withUnsafeBufferPointer { p in
            let s = p.baseAddress!, t = p.baseAddress! + period
            var offset = 0
            while offset + period <= count {
                let from = x + offset, to = y + offset
                for j in 0..<period { to[j] = from[j] * s[j] + t[j] }
                offset += period
            }
            for j in 0..<(count - offset) { y[offset + j] = x[offset + j] * s[j] + t[j] }
        }
        activate(y, count: count, channels: channels, kind: activation)
    }

    /// Per-channel mean and sum of squared deviations (M2) of `rows` samples of
    /// `channels` values, in Double (the population variance is `m2 / rows`).
    /// Overwrites `mean` and `m2`, which hold `channels` values each.
    package static func channelMoments(_ data: UnsafePointer<Float>, rows: Int, channels: Int,
                                       mean: UnsafeMutablePointer<Double>, m2: UnsafeMutablePointer<Double>) {
        bnk_channel_moments(data, rows, channels, mean, m2)
    }

    /// The version `channelMoments` runs under the current cap: "avx512", "avx2" or "generic".
    package static var momentsImplementation: String { String(cString: bnk_channel_moments_isa()) }

    /// Batch normalization with the statistics of the data itself (training mode):
    /// per channel over all `count / channels` rows, `y = gamma (x - mean) / sqrt(var + eps) + beta`
    /// with the population variance; coefficients in Double, applied in place.
    static func batchNormalize(_ data: UnsafeMutablePointer<Float>, count: Int, channels: Int,
                               gamma: [Double]?, beta: [Double]?, epsilon: Double) {
        let rows = count / max(channels, 1)
        guard rows > 0 else { return }
        var mean = [Double](repeating: 0, count: channels), m2 = [Double](repeating: 0, count: channels)
        mean.withUnsafeMutableBufferPointer { m in
            m2.withUnsafeMutableBufferPointer { q in channelMoments(data, rows: rows, channels: channels, mean: m.baseAddress!, m2: q.baseAddress!) }
        }
        var scale = [Float](repeating: 0, count: channels), shift = [Float](repeating: 0, count: channels)
        for c in 0..<channels {
            let s = (gamma?[c] ?? 1) / (m2[c] / Double(rows) + epsilon).squareRoot()
            scale[c] = Float(s)
            shift[c] = Float((beta?[c] ?? 0) - mean[c] * s)
        }
        scale.withUnsafeBufferPointer { s in
            shift.withUnsafeBufferPointer { t in affine(from: data, to: data, count: count, channels: channels, scale: s.baseAddress!, shift: t.baseAddress!) }
        }
    }

    /// Element-wise sum or product of inputs broadcast to `output` (per-sample shapes of one
    /// rank; a size-1 axis is stretched). Row by row over the last axis, whose stride in each
    /// input is 1 or, where that input has size 1 there, 0.
    static func broadcast(_ inputs: [UnsafePointer<Float>], shapes: [[Int]], output: [Int], batch: Int, isAdd: Bool,
                          into y: UnsafeMutablePointer<Float>) {
        broadcast(inputs, shapes: shapes, output: output, batch: batch, operation: isAdd ? .add : .multiply, into: y)
    }

    /// Element-wise merge of inputs broadcast to `output`, as Keras computes it: the first
    /// input, then each other folded in (`average` divides the sum by the input count at the end).
    static func broadcast(_ inputs: [UnsafePointer<Float>], shapes: [[Int]], output: [Int], batch: Int, operation: MergeOperation,
                          into y: UnsafeMutablePointer<Float>) {
        let rank = output.count
        let last = output[rank - 1]
        let outSize = output.reduce(1, *), rows = outSize / max(last, 1)
        let sizes = shapes.map { $0.reduce(1, *) }
        // Element strides of each input along each output axis (0 where it is stretched).
        let strides: [[Int]] = shapes.map { shape in
            var result = [Int](repeating: 0, count: rank), step = 1
            for d in stride(from: rank - 1, through: 0, by: -1) {
                result[d] = shape[d] == 1 && output[d] != 1 ? 0 : step
                step *= shape[d]
            }
            return result
        }
        var offsets = [Int](repeating: 0, count: inputs.count)
        var coordinate = [Int](repeating: 0, count: max(rank - 1, 0))
        for b in 0..<batch {
            coordinate.withUnsafeMutableBufferPointer { c in for d in c.indices { c[d] = 0 } }
            for row in 0..<rows {
                for k in inputs.indices {
                    var offset = b * sizes[k]
                    for d in 0..<(rank - 1) { offset += coordinate[d] * strides[k][d] }
                    offsets[k] = offset
                }
                let target = y + b * outSize + row * last
                let first = inputs[0] + offsets[0], firstStride = strides[0][rank - 1]
                for j in 0..<last { target[j] = first[j * firstStride] }
                for k in 1..<inputs.count {
                    let source = inputs[k] + offsets[k], step = strides[k][rank - 1]
                    switch operation {
                    case .add, .average: for j in 0..<last { target[j] += source[j * step] }
                    case .multiply: for j in 0..<last { target[j] *= source[j * step] }
                    case .subtract: for j in 0..<last { target[j] -= source[j * step] }
                    case .maximum: for j in 0..<last { target[j] = Swift.max(target[j], source[j * step]) }
                    case .minimum: for j in 0..<last { target[j] = Swift.min(target[j], source[j * step]) }
                    }
                }
                if operation == .average {
                    let n = Float(inputs.count)
                    for j in 0..<last { target[j] /= n }
                }
                // Next row: the odometer over the leading axes.
                var d = rank - 2
                while d >= 0 {
                    coordinate[d] += 1
                    if coordinate[d] < output[d] { break }
                    coordinate[d] = 0
                    d -= 1
                }
            }
        }
    }

    /// Applies an activation in place (softmax: over each row of `channels`).
    static func activate(_ data: UnsafeMutablePointer<Float>, count: Int, channels: Int, kind: ActivationKind) {
        if let code = elementwiseCode(kind) {
            bnk_activate(data, data, count, code)
            return
        }
        switch kind {
        case .linear:
            return
        case .relu:
            for i in 0..<count { data[i] = max(data[i], 0) }
        case .relu6:
            for i in 0..<count { data[i] = min(max(data[i], 0), 6) }
        case .sigmoid:
            bnk_sigmoid(data, count)
        case .tanh:
            for i in 0..<count { data[i] = Foundation.tanh(data[i]) }
        case .softmax:
            bnk_softmax(data, count / max(channels, 1), channels)
        case .selu:
            let alpha: Float = 1.6732632423543772, scale: Float = 1.0507009873554805
            for i in 0..<count { let x = data[i]; data[i] = x > 0 ? scale * x : scale * alpha * Foundation.expm1(x) }
        case .swish:
            for i in 0..<count { data[i] = data[i] * sigmoid(data[i]) }
        case .softplus:
            for i in 0..<count { let x = data[i]; data[i] = max(x, 0) + Foundation.log1p(Foundation.exp(-abs(x))) }
        case .softsign:
            for i in 0..<count { data[i] = data[i] / (1 + abs(data[i])) }
        case .exponential:
            for i in 0..<count { data[i] = Foundation.exp(data[i]) }
        case .gelu:
            for i in 0..<count { let x = data[i]; data[i] = 0.5 * x * (1 + Foundation.erf(x * 0.70710678118654752)) }
        case .geluTanh:
            for i in 0..<count {
                let x = data[i]
                data[i] = 0.5 * x * (1 + Foundation.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
            }
        case .hardSigmoid(let slope):
            for i in 0..<count { data[i] = min(max(slope * data[i] + 0.5, 0), 1) }
        case .elu(let alpha):
            for i in 0..<count { let x = data[i]; data[i] = x > 0 ? x : alpha * Foundation.expm1(x) }
        case .leakyRelu(let alpha):
            for i in 0..<count { let x = data[i]; data[i] = x >= 0 ? x : alpha * x }
        case .clippedRelu(let maxValue, let slope, let threshold):
            for i in 0..<count {
                let x = data[i]
                data[i] = x >= threshold ? min(x, maxValue) : slope * (x - threshold)
            }
        case .hardSwish:
            // Keras 3: x * (relu6(x + 3) / 6), in this order.
            for i in 0..<count { let x = data[i]; data[i] = x * (min(max(x + 3, 0), 6) / 6) }
        case .erf:
            for i in 0..<count { data[i] = Foundation.erf(data[i]) }
        }
    }

    @inline(__always)
    static func sigmoid(_ x: Float) -> Float {
        // exp of a large positive argument overflows to +inf and gives 0: exact in the limit.
        1 / (1 + Foundation.exp(-x))
    }
}

/// The activations the kernels implement, with parameters resolved.
enum ActivationKind {
    case linear, relu, relu6, sigmoid, tanh, softmax, selu, swish, softplus, softsign, exponential, gelu, geluTanh
    case hardSigmoid(slope: Float)
    case elu(alpha: Float)
    case leakyRelu(alpha: Float)
    case clippedRelu(maxValue: Float, negativeSlope: Float, threshold: Float)
    case hardSwish
    case erf
}

/// The element-wise merges the broadcast kernel computes.
enum MergeOperation: Equatable {
    case add, multiply, subtract, maximum, minimum, average
}
