import ModelIR

/// A step's weights handed to the kernels where they lie.
enum Weights {
    /// An optional weight (a bias) handed to `body` where it lies, or nil.
    static func optional(_ tensor: Tensor?, _ body: (UnsafePointer<Float>?) -> Void) {
        if let tensor { tensor.withUnsafeValues { body($0.baseAddress!) } } else { body(nil) }
    }
}
