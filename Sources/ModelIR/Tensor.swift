/// Float32 values that live in memory another object owns and keeps alive
/// (a memory-mapped model file): tensors use them in place, without a copy.
/// The memory must not change while any tensor refers to it.
public final class FloatView: @unchecked Sendable {
    public let base: UnsafePointer<Float>
    public let count: Int
    private let owner: AnyObject

    public init(base: UnsafePointer<Float>, count: Int, owner: AnyObject) {
        self.base = base
        self.count = count
        self.owner = owner
    }

    /// Tells the owner these values will not be read for a while (see `Tensor.releaseResidency`).
    func releaseResidency() {
        (owner as? ReleasableResidency)?.releaseResidency(of: UnsafeRawBufferPointer(start: base, count: count * MemoryLayout<Float>.stride))
    }
}

/// Memory whose pages can be dropped and brought back unchanged on the next read (a read-only
/// file mapping: the pages come back from the file), so weights used only once (repacked
/// when a model is planned) stop counting in the process's resident memory.
public protocol ReleasableResidency: AnyObject {
    func releaseResidency(of bytes: UnsafeRawBufferPointer)
}

/// A dense float32 tensor in row-major order: its own array, or a view of
/// values held elsewhere (weights used in place from a mapped file).
public struct Tensor: Equatable, Sendable {
    /// The dimensions, outermost first.
    public let shape: [Int]
    private let storage: Storage

    private enum Storage: Sendable {
        case owned([Float])
        case view(FloatView)
    }

    /// `shape.reduce(1, *)` values, row-major (a copy when the tensor is a view:
    /// bind it once rather than indexing it in a loop; see `withUnsafeValues`).
    public var values: [Float] {
        switch storage {
        case .owned(let values): values
        case .view(let view): Array(UnsafeBufferPointer(start: view.base, count: view.count))
        }
    }

    /// The number of values.
    public var count: Int {
        switch storage {
        case .owned(let values): values.count
        case .view(let view): view.count
        }
    }

    /// Whether the values are used in place from memory the tensor does not own.
    public var isView: Bool {
        if case .view = storage { return true }
        return false
    }

    /// Hints that the values will not be read for a while: a view of a file mapping gives its
    /// whole pages back to the system (a later read brings the same values back from the file);
    /// values the tensor owns stay as they are.
    public func releaseResidency() {
        if case .view(let view) = storage { view.releaseResidency() }
    }

    /// Calls `body` with the values, without copying them.
    public func withUnsafeValues<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        switch storage {
        case .owned(let values): try values.withUnsafeBufferPointer(body)
        case .view(let view): try body(UnsafeBufferPointer(start: view.base, count: view.count))
        }
    }

    /// Creates a tensor; `values.count` must equal the product of `shape`.
    public init(shape: [Int], values: [Float]) throws {
        guard let count = Tensor.elementCount(shape), count == values.count else {
            throw ModelError.tensorSizeMismatch(shape: shape, count: values.count)
        }
        self.shape = shape
        self.storage = .owned(values)
    }

    /// A tensor over values held in place; `view.count` must equal the product of `shape`.
    public init(shape: [Int], view: FloatView) throws {
        guard let count = Tensor.elementCount(shape), count == view.count else {
            throw ModelError.tensorSizeMismatch(shape: shape, count: view.count)
        }
        self.shape = shape
        self.storage = .view(view)
    }

    /// A one-dimensional tensor.
    public init(_ values: [Float]) {
        self.shape = [values.count]
        self.storage = .owned(values)
    }

    /// Same shape and equal values (Float's `==`: 0 equals -0, NaN equals nothing).
    public static func == (a: Tensor, b: Tensor) -> Bool {
        guard a.shape == b.shape, a.count == b.count else { return false }
        return a.withUnsafeValues { x in b.withUnsafeValues { y in x.elementsEqual(y) } }
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
        guard shape == other.shape, count == other.count else { return false }
        return withUnsafeValues { x in other.withUnsafeValues { y in x.elementsEqual(y) { $0.bitPattern == $1.bitPattern } } }
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
