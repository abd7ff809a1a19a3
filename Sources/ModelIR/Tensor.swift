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

/// A named array of float32 or int64 values: optimizer state and other
/// training-time data carried along with a model (not used at inference).
public struct NamedArray: Equatable, Sendable {
    public enum Values: Equatable, Sendable {
        case float32([Float])
        case int64([Int64])

        public var count: Int {
            switch self {
            case .float32(let v): v.count
            case .int64(let v): v.count
            }
        }
    }

    public var name: String
    public var shape: [Int]
    public var values: Values

    public init(name: String, shape: [Int], values: Values) throws {
        guard let count = Tensor.elementCount(shape), count == values.count else {
            throw ModelError.tensorSizeMismatch(shape: shape, count: values.count)
        }
        self.name = name
        self.shape = shape
        self.values = values
    }

    /// Bit-for-bit equality (Float's `==` would equate 0 and -0 and fail on NaN).
    public func isBitIdentical(to other: NamedArray) -> Bool {
        guard name == other.name, shape == other.shape else { return false }
        switch (values, other.values) {
        case let (.float32(a), .float32(b)): return a.map(\.bitPattern) == b.map(\.bitPattern)
        case let (.int64(a), .int64(b)): return a == b
        default: return false
        }
    }
}
