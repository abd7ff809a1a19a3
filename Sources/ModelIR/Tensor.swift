/// A dense float32 tensor in row-major order.
public struct Tensor: Equatable, Sendable {
    /// The dimensions, outermost first.
    public let shape: [Int]
    /// `shape.reduce(1, *)` values, row-major.
    public let values: [Float]

    /// Creates a tensor; `values.count` must equal the product of `shape`.
    public init(shape: [Int], values: [Float]) throws {
        guard let count = Tensor.elementCount(shape), count == values.count else {
            throw ModelError.tensorSizeMismatch(shape: shape, count: values.count)
        }
        self.shape = shape
        self.values = values
    }

    /// A one-dimensional tensor.
    public init(_ values: [Float]) {
        self.shape = [values.count]
        self.values = values
    }

    /// The number of elements of `shape`, or nil when a dimension is
    /// negative or the product overflows.
    public static func elementCount(_ shape: [Int]) -> Int? {
        var count = 1
        for dimension in shape {
            guard dimension >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            if overflow { return nil }
            count = product
        }
        return count
    }

    /// Whether both tensors have the same shape and bit-identical values.
    public func isBitIdentical(to other: Tensor) -> Bool {
        shape == other.shape && values.count == other.values.count
            && zip(values, other.values).allSatisfy { $0.bitPattern == $1.bitPattern }
    }
}
