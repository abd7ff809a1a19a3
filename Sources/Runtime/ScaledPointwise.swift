import CKernels
import ModelIR

/// Squeeze-and-excitation's product (every pixel's channels times its sample's scales) fused into
/// the pointwise Conv2D that alone reads it (EfficientNet's and MobileNetV3's projections): the
/// rows are scaled a chunk at a time into scratch and the chunk multiplied while it is in cache,
/// so the scaled map is never written whole (EfficientNetB0 224's 112 × 112 × 96 after its first
/// blocks: 4.8 MB written and read back an image otherwise) and no step boundary lies between the
/// two. Each product is the one the separate step computes (`bnk_scale_channels`), and each
/// output row the same sums from the GEMM (rows do not depend on how they are blocked): the
/// values are the two steps', bit for bit.
struct ScaledPointwise {
    /// The conv's kernel (inputs × units) prepacked.
    let panels: Panels
    let bias: Tensor?
    /// The conv's geometry (1×1, stride 1, unpadded: `Kernels.isPointwise`).
    let geometry: Kernels.Spatial
    let activation: ActivationKind

    var pixels: Int { geometry.outHeight * geometry.outWidth }
    var inputs: Int { geometry.inChannels }
    var units: Int { geometry.outChannels }

    /// Rows scaled and multiplied at a time: about 32K floats (128 KiB, in L2 while the GEMM
    /// reads it once per block of columns), at least 16 rows.
    var chunkRows: Int { max(16, (1 << 15) / max(inputs, 1)) }
    /// The scratch `run` needs.
    var chunkFloats: Int { chunkRows * inputs }

    /// Rows `rows` of the batch's product (row r is pixel r % pixels of sample r / pixels):
    /// `y = act(scaled x · kernel + bias (+ residual))`, each row's scales its sample's.
    func run(_ x: UnsafePointer<Float>, scales: UnsafePointer<Float>, residual: UnsafePointer<Float>?, rows: Range<Int>,
             _ y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        Weights.optional(bias) { b in
            var row = rows.lowerBound
            while row < rows.upperBound {
                let sample = row / pixels, end = min(rows.upperBound, (sample + 1) * pixels, row + chunkRows)
                Kernels.scaleChannels(x + row * inputs, scales: scales + sample * inputs, into: scratch, batch: 1, pixels: end - row,
                                      channels: inputs)
                Kernels.panelGEMM(input: scratch, rows: end - row, inputs: inputs, panels: panels.pointer, bias: b,
                                  residual: residual.map { $0 + row * units }, units: units, activation: activation, output: y + row * units)
                row = end
            }
        }
    }

    /// Output columns `columns` of all `batch` samples' rows (threads sharing a product over few
    /// pixels): every row scaled into `scratch` (`batch * pixels * inputs` floats), then the
    /// columns' product. `then` as for `Kernels.gemmColumns`. Element-wise activations only.
    func runColumns(_ x: UnsafePointer<Float>, scales: UnsafePointer<Float>, residual: UnsafePointer<Float>?, batch: Int,
                    columns: Range<Int>, _ y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
                    then: Kernels.NextWeights?) {
        precondition(Kernels.isElementwise(activation), "columns of a row-wise activation")
        Kernels.scaleChannels(x, scales: scales, into: scratch, batch: batch, pixels: pixels, channels: inputs)
        Weights.optional(bias) { b in
            // (`kernel` is not read when the panels are given.)
            Kernels.gemmColumns(input: scratch, rows: batch * pixels, inputs: inputs, kernel: panels.pointer, panels: panels.pointer,
                                bias: b, residual: residual, units: units, columns: columns, activation: activation, output: y, then: then)
        }
    }
}
