import Foundation

/// The CPU kernels. Each works on a batch of rows laid out contiguously,
/// channel (last axis) fastest. Only this file touches raw pointers.
enum Kernels {
    /// `output[r, o] = bias[o] + Σ_i input[r, i] * kernel[i, o]` for `rows` rows.
    static func dense(input: UnsafePointer<Float>, rows: Int, inputs: Int,
                      kernel: UnsafePointer<Float>, bias: UnsafePointer<Float>?, units: Int,
                      output: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let x = input + r * inputs
            let y = output + r * units
            if let bias {
                y.update(from: bias, count: units)
            } else {
                y.update(repeating: 0, count: units)
            }
            for i in 0..<inputs {
                let xi = x[i]
                if xi == 0 { continue }
                let w = kernel + i * units
                for o in 0..<units {
                    y[o] += xi * w[o]
                }
            }
        }
    }

    /// `data[r, c] = data[r, c] * scale[c] + shift[c]`, in place.
    static func affine(_ data: UnsafeMutablePointer<Float>, count: Int, channels: Int,
                       scale: UnsafePointer<Float>, shift: UnsafePointer<Float>) {
        var offset = 0
        while offset < count {
            let row = data + offset
            for c in 0..<channels {
                row[c] = row[c] * scale[c] + shift[c]
            }
            offset += channels
        }
    }

    /// Applies an element-wise activation in place (softmax: over each row of `channels`).
    static func activate(_ data: UnsafeMutablePointer<Float>, count: Int, channels: Int, kind: ActivationKind) {
        switch kind {
        case .linear:
            return
        case .relu:
            for i in 0..<count { data[i] = max(data[i], 0) }
        case .sigmoid:
            for i in 0..<count { data[i] = sigmoid(data[i]) }
        case .tanh:
            for i in 0..<count { data[i] = Foundation.tanh(data[i]) }
        case .softmax:
            var offset = 0
            while offset < count {
                softmax(data + offset, channels)
                offset += channels
            }
        }
    }

    @inline(__always)
    static func sigmoid(_ x: Float) -> Float {
        // exp of a large positive argument overflows to +inf and gives 0: exact in the limit.
        1 / (1 + Foundation.exp(-x))
    }

    static func softmax(_ row: UnsafeMutablePointer<Float>, _ count: Int) {
        var maximum = -Float.infinity
        for i in 0..<count { maximum = max(maximum, row[i]) }
        var sum: Float = 0
        for i in 0..<count {
            let e = Foundation.exp(row[i] - maximum)
            row[i] = e
            sum += e
        }
        for i in 0..<count { row[i] /= sum }
    }
}

/// The activations the kernels implement.
enum ActivationKind {
    case linear, relu, sigmoid, tanh, softmax
}
