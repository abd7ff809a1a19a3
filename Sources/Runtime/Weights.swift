import ModelIR

/// A step's weights handed to the kernels where they lie.
enum Weights {
    /// An optional weight (a bias) handed to `body` where it lies, or nil.
    static func optional(_ tensor: Tensor?, _ body: (UnsafePointer<Float>?) -> Void) {
        if let tensor { tensor.withUnsafeValues { body($0.baseAddress!) } } else { body(nil) }
    }
}

/// Floats the plan derived from a model's weights (a slice of a kernel), in memory aligned to
/// 64 bytes as the mapped weights are: whole-vector loads never split a cache line.
final class AlignedWeights: @unchecked Sendable {
    private let base: UnsafeMutablePointer<Float>
    let count: Int

    /// `count` floats, `value(i)` each.
    init(count: Int, _ value: (Int) -> Float) {
        self.count = count
        base = FloatMemory.allocate(count, huge: false)
        for i in 0..<count { base[i] = value(i) }
    }

    deinit { FloatMemory.release(base) }

    var pointer: UnsafePointer<Float> { UnsafePointer(base) }
}
