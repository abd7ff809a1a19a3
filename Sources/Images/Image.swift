import CImageDecode
import Foundation

/// Why an image cannot be used.
public struct ImageError: Error, CustomStringConvertible, Equatable, Sendable {
    public let path: String
    public let detail: String
    public init(path: String, detail: String) {
        self.path = path
        self.detail = detail
    }
    public var description: String { "\(path): \(detail)" }
}

/// A decoded image, rows top to bottom, channels interleaved (1: gray, 3: RGB): 8-bit
/// samples, or 16-bit ones (`depth` 16: a 16-bit grayscale PNG read as gray, as Pillow's
/// "I;16" mode keeps it).
public struct Image8: Equatable, Sendable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var depth: Int
    public var pixels: [UInt16]

    public init(width: Int, height: Int, channels: Int, depth: Int = 8, pixels: [UInt16]) {
        precondition(pixels.count == width * height * channels, "pixel count")
        self.width = width
        self.height = height
        self.channels = channels
        self.depth = depth
        self.pixels = pixels
    }

    /// Largest image decoded (from its header, before any pixel): 64 megapixels.
    public static let maxPixels = 64 << 20

    /// Decodes a PNG or JPEG (by signature) with libpng / libjpeg(-turbo) to `channels`
    /// (3: RGB, 1: gray) the way Pillow's `open(...).convert("RGB" / "L")` does, which is
    /// what `keras.utils.load_img` calls (see CImageDecode for the conversions).
    /// Images over `maxPixels` pixels are refused from their header.
    public static func decode(path: String, channels: Int, maxPixels: Int = Image8.maxPixels) throws -> Image8 {
        try ImageDecoder(maxPixels: maxPixels).decode(path: path, channels: channels)
    }
}

/// Decodes images one after another into memory it keeps, and resizes them from their
/// decoded samples: a 12-megapixel photo's 36 MB is neither mapped afresh (and cleared by
/// the kernel page by page) nor widened to 16 bits for every image. One thread at a time.
public final class ImageDecoder {
    private var scratch = bnk_scratch()
    /// Largest image decoded, in pixels (from its header, before any pixel).
    public let maxPixels: Int

    public init(maxPixels: Int = Image8.maxPixels) { self.maxPixels = maxPixels }
    deinit { bnk_scratch_free(&scratch) }

    /// The image at `path`, as `Image8.decode` gives it.
    public func decode(path: String, channels: Int) throws -> Image8 {
        try withDecoded(path: path, channels: channels) { plane8, plane16 in
            if let plane16 { return Image8(width: plane16.width, height: plane16.height, channels: plane16.channels, depth: 16, pixels: plane16.samples) }
            return Image8(width: plane8!.width, height: plane8!.height, channels: plane8!.channels, pixels: plane8!.samples)
        }
    }

    /// The image at `path` decoded and resized to `width` × `height`: the same pixels as
    /// `Image8.decode(...).resized(...)`, without the full-size 16-bit copy.
    public func load(path: String, channels: Int, width: Int, height: Int, method: ResizeMethod) throws -> Image8 {
        try withDecoded(path: path, channels: channels) { plane8, plane16 in
            if let plane16 { return plane16.resized(width: width, height: height, method: method) }
            return plane8!.resized(width: width, height: height, method: method)
        }
    }

    /// Decodes into the scratch and lends its samples (8-bit, or 16-bit for 16-bit gray PNG).
    private func withDecoded<T>(path: String, channels: Int, _ body: (Plane<UInt8>?, Plane<UInt16>?) -> T) throws -> T {
        var image = bnk_image()
        var message = [CChar](repeating: 0, count: 512)
        let status = bnk_image_decode(path, Int32(channels), maxPixels, &scratch, &image, &message, message.count)
        guard status == 0, let bytes = image.pixels else {
            let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw ImageError(path: path, detail: "cannot read the image: \(text.isEmpty ? "damaged or unsupported" : text)")
        }
        let (width, height, depth) = (Int(image.width), Int(image.height), Int(image.depth))
        let count = width * height * Int(image.channels)
        if depth == 16 {
            return UnsafeRawPointer(bytes).withMemoryRebound(to: UInt16.self, capacity: count) {
                body(nil, Plane(base: $0, width: width, height: height, channels: Int(image.channels), depth: 16))
            }
        }
        return body(Plane(base: bytes, width: width, height: height, channels: Int(image.channels), depth: 8), nil)
    }
}

/// Samples held elsewhere (a decoder's scratch or an image's array): rows top to bottom,
/// channels interleaved, 0…255 (`depth` 8) or 0…65535 (16). The resizes read these.
struct Plane<Sample: FixedWidthInteger & UnsignedInteger> {
    let base: UnsafePointer<Sample>
    let width: Int, height: Int, channels: Int, depth: Int

    /// The samples widened into an array.
    var samples: [UInt16] {
        let count = width * height * channels
        return [UInt16](unsafeUninitializedCapacity: count) { wide, initialized in
            for i in 0..<count { wide[i] = UInt16(truncatingIfNeeded: base[i]) }
            initialized = count
        }
    }
}

/// How an image is brought to the model's input size.
public enum ResizeMethod: String, Sendable, CaseIterable {
    /// Pillow's `Image.resize(size, NEAREST)` (what `keras.utils.load_img(target_size=…)`
    /// does by default): source pixel `floor((x + 0.5) · in / out)`.
    case nearest
    /// Pillow's `Image.resize(size, BILINEAR)`: a triangle filter widened by the scale when
    /// shrinking (antialiased), in Pillow's 22-bit fixed point, horizontal pass first.
    case bilinear
}

extension Image8 {
    /// This image at `width` × `height`, exactly as Pillow resizes it.
    public func resized(width newWidth: Int, height newHeight: Int, method: ResizeMethod) -> Image8 {
        if newWidth == width && newHeight == height { return self }
        return withPlane { $0.resized(width: newWidth, height: newHeight, method: method) }
    }

    /// Lends this image's samples as a plane.
    func withPlane<T>(_ body: (Plane<UInt16>) -> T) -> T {
        pixels.withUnsafeBufferPointer { samples in
            precondition(samples.baseAddress != nil, "an image with pixels")
            return body(Plane(base: samples.baseAddress!, width: width, height: height, channels: channels, depth: depth))
        }
    }
}

extension Plane {
    /// These samples at `width` × `height`, exactly as Pillow resizes them.
    func resized(width newWidth: Int, height newHeight: Int, method: ResizeMethod) -> Image8 {
        if newWidth == width && newHeight == height { return Image8(width: width, height: height, channels: channels, depth: depth, pixels: samples) }
        switch method {
        case .nearest: return nearest(newWidth, newHeight)
        case .bilinear: return bilinear(newWidth, newHeight)
        }
    }

    private func nearest(_ outWidth: Int, _ outHeight: Int) -> Image8 {
        // Pillow's ImagingScaleAffine: positions accumulated in double, from half a step.
        func table(_ input: Int, _ output: Int) -> [Int] {
            let step = Double(input) / Double(output)
            var position = step * 0.5
            return (0..<output).map { _ in
                let index = position < 0 ? -1 : Int(position)
                position += step
                return Swift.min(Swift.max(index, 0), input - 1)
            }
        }
        let xs = table(width, outWidth), ys = table(height, outHeight)
        let count = outWidth * outHeight * channels
        let out = [UInt16](unsafeUninitializedCapacity: count) { target, initialized in
            var next = target.baseAddress!
            for sy in ys {
                let row = base + sy * width * channels
                for sx in xs {
                    for c in 0..<channels { next[c] = UInt16(truncatingIfNeeded: row[sx * channels + c]) }
                    next += channels
                }
            }
            initialized = count
        }
        return Image8(width: outWidth, height: outHeight, channels: channels, depth: depth, pixels: out)
    }

    /// One resampling pass along an axis (Pillow's ResampleHorizontal/Vertical): 8-bit in
    /// 22-bit fixed point (normalize_coeffs_8bpc, clip8), 16-bit in double (ROUND_UP, CLIP16).
    /// `coefficients` are for the axis's full input length; the pass reads `lines` rows
    /// (horizontal) or all columns (vertical) of this image starting at source line `offset`,
    /// and this image's first line along the axis is source line `shift` (Pillow's shifted bounds).
    private func pass(horizontal: Bool, _ coefficients: (bounds: [Int], weights: [[Double]]), offset: Int = 0, lines: Int? = nil,
                      shift: Int = 0) -> Image8 {
        let (bounds, weights) = coefficients
        let output = bounds.count
        let lines = lines ?? (horizontal ? height : width)
        let outWidth = horizontal ? output : width, outHeight = horizontal ? lines : output
        // Every output's taps end to end (output o's are taps[o]..<taps[o + 1]): 8-bit in Pillow's
        // 22-bit fixed point, 16-bit in Double.
        let taps = weights.reduce(into: [0]) { $0.append($0.last! + $1.count) }
        let flat = weights.flatMap { $0 }
        let fixed = flat.map { w in Int32(w < 0 ? -0.5 + w * Double(1 << 22) : 0.5 + w * Double(1 << 22)) }
        var out = [UInt16](repeating: 0, count: outWidth * outHeight * channels)
        // Every output sums its window's taps in order from Pillow's rounding constant: the 8-bit
        // sums in wrapping Int32 (as Pillow's int arithmetic), the 16-bit ones in Double.
        func clip8(_ sum: Int32) -> UInt16 { let v = sum >> 22; return UInt16(v < 0 ? 0 : v > 255 ? 255 : v) }
        func clip16(_ sum: Double) -> UInt16 { UInt16(Swift.min(Swift.max(Int(sum >= 0 ? sum + 0.5 : sum - 0.5), 0), 65535)) }
        let source = UnsafeBufferPointer(start: base, count: width * height * channels)
        fixed.withUnsafeBufferPointer { fixed in out.withUnsafeMutableBufferPointer { target in
            if horizontal {
                // Along a row: a window's taps are `channels` apart; an RGB pixel's three sums
                // go together.
                for line in 0..<lines {
                    let row = source.baseAddress! + (line + offset) * width * channels
                    let outRow = target.baseAddress! + line * outWidth * channels
                    for o in 0..<output {
                        var tap = row + (bounds[o] - shift) * channels
                        let out = outRow + o * channels
                        if depth == 8 && channels == 3 {
                            var (r, g, b): (Int32, Int32, Int32) = (1 << 21, 1 << 21, 1 << 21)
                            for k in taps[o]..<taps[o + 1] {
                                let w = fixed[k]
                                r &+= Int32(truncatingIfNeeded: tap[0]) &* w
                                g &+= Int32(truncatingIfNeeded: tap[1]) &* w
                                b &+= Int32(truncatingIfNeeded: tap[2]) &* w
                                tap += 3
                            }
                            (out[0], out[1], out[2]) = (clip8(r), clip8(g), clip8(b))
                        } else if depth == 8 {
                            for c in 0..<channels {
                                var sum: Int32 = 1 << 21
                                for (i, k) in (taps[o]..<taps[o + 1]).enumerated() { sum &+= Int32(truncatingIfNeeded: tap[i &* channels &+ c]) &* fixed[k] }
                                out[c] = clip8(sum)
                            }
                        } else {
                            for c in 0..<channels {
                                var sum = 0.0
                                for (i, k) in (taps[o]..<taps[o + 1]).enumerated() { sum += Double(tap[i &* channels &+ c]) * flat[k] }
                                out[c] = clip16(sum)
                            }
                        }
                    }
                }
            } else {
                // Down the columns: each output row sums whole input rows, tap by tap, so
                // every value still adds its taps in order.
                precondition(offset == 0 && lines == width, "a vertical pass covers every column")
                let rowLength = width * channels
                if depth == 8 {
                    var sums = [Int32](repeating: 0, count: rowLength)
                    for o in 0..<output {
                        for k in 0..<rowLength { sums[k] = 1 << 21 }
                        for (i, tap) in (taps[o]..<taps[o + 1]).enumerated() {
                            let row = (bounds[o] - shift + i) * rowLength, w = fixed[tap]
                            for k in 0..<rowLength { sums[k] &+= Int32(truncatingIfNeeded: source[row + k]) &* w }
                        }
                        for k in 0..<rowLength { target[o * rowLength + k] = clip8(sums[k]) }
                    }
                } else {
                    var sums = [Double](repeating: 0, count: rowLength)
                    for o in 0..<output {
                        for k in 0..<rowLength { sums[k] = 0 }
                        for (i, tap) in (taps[o]..<taps[o + 1]).enumerated() {
                            let row = (bounds[o] - shift + i) * rowLength, w = flat[tap]
                            for k in 0..<rowLength { sums[k] += Double(source[row + k]) * w }
                        }
                        for k in 0..<rowLength { target[o * rowLength + k] = clip16(sums[k]) }
                    }
                }
            }
        } }
        return Image8(width: outWidth, height: outHeight, channels: channels, depth: depth, pixels: out)
    }

    /// Pillow 13's ImagingResampleInner: horizontal pass first (over only the rows the
    /// vertical pass reads), unless the height shrinks by more than twice what the width does.
    private func bilinear(_ outWidth: Int, _ outHeight: Int) -> Image8 {
        let needHorizontal = outWidth != width, needVertical = outHeight != height
        let horizontal = bilinearCoefficients(input: width, output: outWidth)
        let vertical = bilinearCoefficients(input: height, output: outHeight)
        let horizontalFirst = !((height - outHeight) > 0 && (height - outHeight) > (width - outWidth) * 2)
        if horizontalFirst {
            guard needHorizontal else { return pass(horizontal: false, vertical) }
            guard needVertical else { return pass(horizontal: true, horizontal) }
            let first = vertical.bounds[0], last = vertical.bounds[outHeight - 1] + vertical.weights[outHeight - 1].count
            return pass(horizontal: true, horizontal, offset: first, lines: last - first).withPlane { $0.pass(horizontal: false, vertical, shift: first) }
        }
        // Vertical first: the height shrinks, so there is a vertical pass.
        let image = pass(horizontal: false, vertical)
        return needHorizontal ? image.withPlane { $0.pass(horizontal: true, horizontal) } : image
    }
}

/// Pillow's precompute_coeffs for the bilinear filter: per output position, the first input
/// index and the normalized weights.
private func bilinearCoefficients(input: Int, output: Int) -> (bounds: [Int], weights: [[Double]]) {
    let scale = Double(input) / Double(output)
    let filterScale = Swift.max(scale, 1)
    let support = 1.0 * filterScale
    var bounds: [Int] = [], weights: [[Double]] = []
    for xx in 0..<output {
        let center = (Double(xx) + 0.5) * scale
        let ss = 1 / filterScale
        let xmin = Swift.max(Int(center - support + 0.5), 0)
        let xmax = Swift.min(Int(center + support + 0.5), input) - xmin
        var k = (0..<Swift.max(xmax, 0)).map { x -> Double in
            let t = abs((Double(x + xmin) - center + 0.5) * ss)
            return t < 1 ? 1 - t : 0
        }
        let total = k.reduce(0, +)
        if total != 0 { k = k.map { $0 / total } }
        bounds.append(xmin)
        weights.append(k)
    }
    return (bounds, weights)
}

/// The pixel conventions of `keras.applications.*.preprocess_input`, applied to the
/// 0…255 values `img_to_array` gives, in float32 in NumPy's order of operations.
public enum Preprocessing: String, Sendable, CaseIterable {
    /// The 0…255 values as they are (models that rescale inside, e.g. EfficientNet).
    case none
    /// `x / 127.5 - 1`: [-1, 1] (MobileNet, MobileNetV2/V3 preprocess, Inception, Xception, NASNet...).
    case tf
    /// `x / 255`, then per RGB channel minus the ImageNet mean, divided by its std (DenseNet).
    case torch
    /// RGB to BGR, then minus the ImageNet BGR means, no scaling (ResNet, VGG).
    case caffe

    /// Converts interleaved 0…255 pixels with `channels` channels into model inputs.
    public func apply(_ pixels: [UInt16], channels: Int, into output: UnsafeMutableBufferPointer<Float>) {
        precondition(output.count == pixels.count)
        switch self {
        case .none:
            for i in pixels.indices { output[i] = Float(pixels[i]) }
        case .tf:
            for i in pixels.indices { output[i] = Float(pixels[i]) / Float(127.5) - Float(1) }
        case .torch:
            let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
            for i in pixels.indices {
                let c = channels == 3 ? i % 3 : 0
                output[i] = channels == 3 ? (Float(pixels[i]) / Float(255) - mean[c]) / std[c] : Float(pixels[i]) / Float(255)
            }
        case .caffe:
            let mean: [Float] = [103.939, 116.779, 123.68]
            if channels == 3 {
                for p in 0..<(pixels.count / 3) {
                    for c in 0..<3 { output[p * 3 + c] = Float(pixels[p * 3 + 2 - c]) - mean[c] }
                }
            } else {
                for i in pixels.indices { output[i] = Float(pixels[i]) - mean[0] }
            }
        }
    }
}
