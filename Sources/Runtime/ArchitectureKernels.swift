import CKernels
import Foundation

/// Kernels for the layers of the larger architectures: layer normalization,
/// upsampling and cropping (transposed convolutions: TransposedConvolution). Each has a
/// plain reference in the tests.
extension Kernels {
    /// Layer normalization of each sample over the trailing `inner` values of each of its
    /// `sampleSize / inner` rows (the normalized axes are the last ones): moments in Double,
    /// `y = (x − mean) · (1 / sqrt(var + eps)) · gamma[j] + beta[j]`.
    static func layerNormTrailing(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, inner: Int,
                                  gamma: UnsafePointer<Float>?, beta: UnsafePointer<Float>?, epsilon: Double) {
        bnk_layer_norm(x, y, rows, inner, gamma, beta, epsilon)
    }

    /// Layer normalization over any axis set: `group[e]` is the statistics group of element e of
    /// a sample and `parameter[e]` its index into gamma and beta (`groups` groups per sample).
    static func layerNormIndexed(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, sampleSize: Int,
                                 group: [Int32], parameter: [Int32], groups: Int,
                                 gamma: UnsafePointer<Float>?, beta: UnsafePointer<Float>?, epsilon: Double) {
        let perGroup = Double(sampleSize / max(groups, 1))
        var mean = [Double](repeating: 0, count: groups), squares = [Double](repeating: 0, count: groups)
        for b in 0..<batch {
            let source = x + b * sampleSize, target = y + b * sampleSize
            for g in 0..<groups { mean[g] = 0; squares[g] = 0 }
            for e in 0..<sampleSize { mean[Int(group[e])] += Double(source[e]) }
            for g in 0..<groups { mean[g] /= perGroup }
            for e in 0..<sampleSize { let d = Double(source[e]) - mean[Int(group[e])]; squares[Int(group[e])] += d * d }
            for g in 0..<groups { squares[g] = 1 / (squares[g] / perGroup + epsilon).squareRoot() }
            for e in 0..<sampleSize {
                let g = Int(group[e]), p = Int(parameter[e])
                var value = (Double(source[e]) - mean[g]) * squares[g]
                if let gamma { value *= Double(gamma[p]) }
                if let beta { value += Double(beta[p]) }
                target[e] = Float(value)
            }
        }
    }

    /// Upsampling by integer factors, bilinear or nearest (below), output rows `rows` (over the batch);
    /// `channelsFirst`: each image written as its (channels, height, width) map, the NHWC → NCHW
    /// transpose of the result done as it is written (the same values).
    static func upsample(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Range<Int>, height: Int, width: Int,
                         channels: Int, factorY: Int, factorX: Int, bilinear: Bool, channelsFirst: Bool = false) {
        if bilinear {
            upsampleBilinear(x, y, rows: rows, height: height, width: width, channels: channels, factorY: factorY, factorX: factorX,
                             channelsFirst: channelsFirst)
        } else {
            upsampleNearest(x, y, rows: rows, height: height, width: width, channels: channels, factorY: factorY, factorX: factorX,
                            channelsFirst: channelsFirst)
        }
    }

    /// Every one of `pixels` pixels of `channels` values set to `bias` (zeros without one): the
    /// start of an output that products are then added into.
    static func fill(_ y: UnsafeMutablePointer<Float>, pixels: Int, channels: Int, bias: [Float]?) {
        guard let bias else { return y.update(repeating: 0, count: pixels * channels) }
        bias.withUnsafeBufferPointer { b in
            for pixel in 0..<pixels { (y + pixel * channels).update(from: b.baseAddress!, count: channels) }
        }
    }

    /// Nearest-neighbour upsampling by integer factors: output pixel (y, x) is input pixel (y / fy, x / fx);
    /// output rows `rows` (counted over the batch: image b's row r is b · height · factorY + r).
    static func upsampleNearest(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Range<Int>, height: Int, width: Int,
                                channels: Int, factorY: Int, factorX: Int, channelsFirst: Bool = false) {
        let outHeight = height * factorY, outWidth = width * factorX
        if channelsFirst {
            for row in rows {
                let (b, oy) = row.quotientAndRemainder(dividingBy: outHeight)
                let source = x + ((b * height + oy / factorY) * width) * channels
                for c in 0..<channels {
                    let target = y + ((b * channels + c) * outHeight + oy) * outWidth
                    for ox in 0..<outWidth { target[ox] = source[(ox / factorX) * channels + c] }
                }
            }
            return
        }
        var target = y + rows.lowerBound * outWidth * channels
        for row in rows {
            let (b, oy) = row.quotientAndRemainder(dividingBy: outHeight)
            let source = x + ((b * height + oy / factorY) * width) * channels
            for ox in 0..<outWidth {
                target.update(from: source + (ox / factorX) * channels, count: channels)
                target += channels
            }
        }
    }

    /// Bilinear upsampling as `tf.image.resize(method="bilinear")` computes it (half-pixel centres,
    /// `in = (out + 0.5) · (in_size / out_size) − 0.5`, edges clamped), in its Float arithmetic and
    /// order (each output value top + (bottom − top) · yLerp, top and bottom each the horizontal
    /// lerp of an input row); output rows `rows` (counted over the batch). An input row's
    /// horizontal lerps are made once into a kept row and read by every output row after it that
    /// uses it (8 in a row at a factor of 8), and the vertical lerp runs over whole rows: LR-ASPP's
    /// 28 × 28 → 224 × 224 × 21, AMD Zen 4, one thread, profiled: 0.52 → 0.46 ms an image at
    /// AVX-512, 0.51 → 0.42 at AVX2 (the same values; what is left is mostly writing the 4 MB map).
    /// Channels-first, the kept rows hold each channel's lerps in a run, so the vertical lerp still
    /// runs over contiguous rows.
    static func upsampleBilinear(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Range<Int>, height: Int, width: Int,
                                 channels: Int, factorY: Int, factorX: Int, channelsFirst: Bool = false) {
        guard !rows.isEmpty else { return }
        let outHeight = height * factorY, outWidth = width * factorX
        func weights(_ outSize: Int, _ inSize: Int) -> [(lower: Int, upper: Int, lerp: Float)] {
            let scale = Float(inSize) / Float(outSize)
            return (0..<outSize).map { i in
                let position = (Float(i) + 0.5) * scale - 0.5
                let floor = position.rounded(.down)
                return (Swift.max(Int(floor), 0), Swift.min(Int(position.rounded(.up)), inSize - 1), position - floor)
            }
        }
        let ys = weights(outHeight, height), xs = weights(outWidth, width)
        let rowFloats = outWidth * channels
        // Two kept rows of horizontal lerps, and which input row (over the batch) each holds.
        let kept = UnsafeMutablePointer<Float>.allocate(capacity: 2 * rowFloats)
        defer { kept.deallocate() }
        var holds = [-1, -1]
        func lerpedRow(_ inputRow: Int, avoiding other: Int) -> UnsafeMutablePointer<Float> {
            if let slot = holds.firstIndex(of: inputRow) { return kept + slot * rowFloats }
            let slot = holds[0] == other ? 1 : 0
            holds[slot] = inputRow
            let source = x + inputRow * width * channels, target = kept + slot * rowFloats
            for ox in 0..<outWidth {
                let (x0, x1, xLerp) = xs[ox]
                let left = source + x0 * channels, right = source + x1 * channels
                if channelsFirst {
                    for c in 0..<channels { target[c * outWidth + ox] = left[c] + (right[c] - left[c]) * xLerp }
                } else {
                    let out = target + ox * channels
                    for c in 0..<channels { out[c] = left[c] + (right[c] - left[c]) * xLerp }
                }
            }
            return target
        }
        for row in rows {
            let (b, oy) = row.quotientAndRemainder(dividingBy: outHeight)
            let (y0, y1, yLerp) = ys[oy]
            let top = lerpedRow(b * height + y0, avoiding: b * height + y1)
            let bottom = lerpedRow(b * height + y1, avoiding: b * height + y0)
            if channelsFirst {
                for c in 0..<channels {
                    let out = y + ((b * channels + c) * outHeight + oy) * outWidth, above = top + c * outWidth, below = bottom + c * outWidth
                    for ox in 0..<outWidth { out[ox] = above[ox] + (below[ox] - above[ox]) * yLerp }
                }
                continue
            }
            let out = y + row * rowFloats
            for i in 0..<rowFloats { out[i] = top[i] + (bottom[i] - top[i]) * yLerp }
        }
    }

    /// Copies the window [top, top + outHeight) × [left, left + outWidth) of each image.
    static func crop(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, height: Int, width: Int, channels: Int,
                     top: Int, left: Int, outHeight: Int, outWidth: Int) {
        var target = y
        for b in 0..<batch {
            for row in 0..<outHeight {
                target.update(from: x + ((b * height + top + row) * width + left) * channels, count: outWidth * channels)
                target += outWidth * channels
            }
        }
    }

    /// Output rows `rows` (counted over the batch: sample b's row r is b · outHeight + r) of a
    /// chain of paddings, croppings and 1×1 poolings (`PixelWindow`): each output pixel a copy of
    /// its input pixel's `channels` values, or zeros.
    static func window(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ window: PixelWindow, channels: Int,
                       rows: Range<Int>) {
        let columns = window.width.kept, keptRows = window.height.kept
        let outWidth = window.outWidth, rowFloats = outWidth * channels
        let inImage = window.inHeight * window.inWidth * channels
        for row in rows {
            let (b, r) = row.quotientAndRemainder(dividingBy: window.outHeight)
            let target = y + row * rowFloats
            guard keptRows.contains(r), !columns.isEmpty else {
                target.update(repeating: 0, count: rowFloats)
                continue
            }
            let inputRow = r * window.height.stride + window.height.offset
            let source = x + b * inImage + inputRow * window.inWidth * channels
            target.update(repeating: 0, count: columns.lowerBound * channels)
            if window.width.stride == 1 {
                let from = columns.lowerBound + window.width.offset
                (target + columns.lowerBound * channels).update(from: source + from * channels, count: columns.count * channels)
            } else {
                for column in columns {
                    let from = column * window.width.stride + window.width.offset
                    (target + column * channels).update(from: source + from * channels, count: channels)
                }
            }
            (target + columns.upperBound * channels).update(repeating: 0, count: (outWidth - columns.upperBound) * channels)
        }
    }
}

extension Kernels {
    /// Copies values `start..<start + count` of each of `blocks` runs of `size` values.
    static func slice(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, blocks: Int, size: Int, start: Int, count: Int) {
        for block in 0..<blocks {
            (y + block * count).update(from: x + block * size + start, count: count)
        }
    }
}

extension Kernels {
    /// Rows `rows` of an a × b matrix written as columns of its b × a transpose
    /// (`bnk_transpose_rows`; threads share a transpose by rows: each writes its own columns).
    static func transposeRows(_ source: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>, a: Int, b: Int, rows: Range<Int>) {
        guard !rows.isEmpty, b > 0 else { return }
        bnk_transpose_rows(source, target, Int32(a), Int32(b), Int32(rows.lowerBound), Int32(rows.upperBound))
    }

    /// A permutation that is one matrix transpose per leading index once adjacent axes are merged
    /// (a map's NHWC → NCHW: (1, h·w, c) → (1, c, h·w)): `outer` matrices of a × b; nil for others.
    static func transposedMatrices(shape: [Int], perm: [Int]) -> (outer: Int, a: Int, b: Int)? {
        guard perm.count >= 2 else { return nil }
        // Output runs of consecutive input axes: (start, end) each.
        var runs: [(Int, Int)] = []
        for axis in perm {
            if let last = runs.last, last.1 == axis { runs[runs.count - 1].1 = axis + 1 } else { runs.append((axis, axis + 1)) }
        }
        let size: ((Int, Int)) -> Int = { shape[$0.0..<$0.1].reduce(1, *) }
        if runs.count == 2, runs[0].0 > runs[1].0 { return (1, size(runs[1]), size(runs[0])) }
        if runs.count == 3, runs[0].0 == 0, runs[1].0 > runs[2].0 { return (size(runs[0]), size(runs[2]), size(runs[1])) }
        return nil
    }

    /// Permutes the axes of each sample: output axis i is input axis `perm[i]`. The last output
    /// axis is copied as a strided run; the others step an odometer.
    static func transpose(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, shape original: [Int], perm moved: [Int]) {
        // Input axes that stay next to each other, in order, move as one.
        var shape: [Int] = [], perm: [Int] = []
        var merged: [Int: Int] = [:]  // first input axis of each run -> its merged axis
        var runStarts: [Int] = []
        for (k, axis) in moved.enumerated() {
            if k > 0, axis == moved[k - 1] + 1 { continue }
            runStarts.append(axis)
        }
        for axis in runStarts.sorted() {
            var end = axis + 1
            while let k = moved.firstIndex(of: end - 1), k + 1 < moved.count, moved[k + 1] == end { end += 1 }
            merged[axis] = shape.count
            shape.append(original[axis..<end].reduce(1, *))
        }
        perm = runStarts.map { merged[$0]! }
        let size = shape.reduce(1, *)
        if let (outer, a, b) = transposedMatrices(shape: original, perm: moved) {
            // Matrices (a × b) to (b × a), one per leading index (bnk_transpose_rows past 4 rows).
            for m in 0..<(batch * outer) {
                let source = x + m * a * b, target = y + m * a * b
                if a == 2 {
                    // Two rows interleaved (a channel shuffle of two groups).
                    let second = source + b
                    for j in 0..<b {
                        target[2 * j] = source[j]
                        target[2 * j + 1] = second[j]
                    }
                    continue
                }
                if a == 3 || a == 4 {
                    // Three or four rows interleaved: an RGB(A) image fed NCHW, to channels-last (every
                    // PyTorch export's input). 3 × 96 × 96, AMD Zen 4, profiled: 24 µs an image in the
                    // 16 × 16 tiles (their bounds for each three values) -> 10-12 µs.
                    let second = source + b, third = source + 2 * b
                    if a == 3 {
                        for j in 0..<b {
                            target[3 * j] = source[j]
                            target[3 * j + 1] = second[j]
                            target[3 * j + 2] = third[j]
                        }
                    } else {
                        let fourth = source + 3 * b
                        for j in 0..<b {
                            target[4 * j] = source[j]
                            target[4 * j + 1] = second[j]
                            target[4 * j + 2] = third[j]
                            target[4 * j + 3] = fourth[j]
                        }
                    }
                    continue
                }
                transposeRows(source, target, a: a, b: b, rows: 0..<a)
            }
            return
        }
        let rank = shape.count
        var inputStrides = [Int](repeating: 1, count: rank)
        for d in stride(from: rank - 2, through: 0, by: -1) { inputStrides[d] = inputStrides[d + 1] * shape[d + 1] }
        let outShape = perm.map { shape[$0] }, strides = perm.map { inputStrides[$0] }
        let last = outShape[rank - 1], step = strides[rank - 1], rows = size / max(last, 1)
        var coordinate = [Int](repeating: 0, count: max(rank - 1, 0))
        for b in 0..<batch {
            let source = x + b * size
            var target = y + b * size
            for d in coordinate.indices { coordinate[d] = 0 }
            for _ in 0..<rows {
                var offset = 0
                for d in 0..<(rank - 1) { offset += coordinate[d] * strides[d] }
                for j in 0..<last { target[j] = source[offset + j * step] }
                target += last
                var d = rank - 2
                while d >= 0 {
                    coordinate[d] += 1
                    if coordinate[d] < outShape[d] { break }
                    coordinate[d] = 0
                    d -= 1
                }
            }
        }
    }
}
