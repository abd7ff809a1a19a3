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

/// An 8-bit image, rows top to bottom, channels interleaved (1: gray, 3: RGB).
public struct Image8: Equatable, Sendable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * channels, "pixel count")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// Largest image decoded (from its header, before any pixel): 64 megapixels.
    public static let maxPixels = 64 << 20

    /// Decodes a PNG or JPEG (by signature) with libpng / libjpeg(-turbo) to `channels`
    /// (3: RGB, 1: gray) the way Pillow's `open(...).convert("RGB" / "L")` does, which is
    /// what `keras.utils.load_img` calls (see CImageDecode for the conversions).
    public static func decode(path: String, channels: Int) throws -> Image8 {
        var image = bnk_image()
        var message = [CChar](repeating: 0, count: 512)
        let status = bnk_image_decode(path, Int32(channels), maxPixels, &image, &message, message.count)
        guard status == 0 else {
            let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw ImageError(path: path, detail: "cannot read the image: \(text.isEmpty ? "damaged or unsupported" : text)")
        }
        defer { bnk_image_free(&image) }
        let count = Int(image.width) * Int(image.height) * Int(image.channels)
        return Image8(width: Int(image.width), height: Int(image.height), channels: Int(image.channels),
                      pixels: Array(UnsafeBufferPointer(start: image.pixels, count: count)))
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
        var out = [UInt8](repeating: 0, count: outWidth * outHeight * channels)
        for (y, sy) in ys.enumerated() {
            for (x, sx) in xs.enumerated() {
                for c in 0..<channels { out[(y * outWidth + x) * channels + c] = pixels[(sy * width + sx) * channels + c] }
            }
        }
        return Image8(width: outWidth, height: outHeight, channels: channels, pixels: out)
    }

    /// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter.
    private static func coefficients(input: Int, output: Int) -> (bounds: [(start: Int, count: Int)], weights: [[Int32]]) {
        let precision = 22
        let scale = Double(input) / Double(output)
        let filterScale = Swift.max(scale, 1)
        let support = 1.0 * filterScale
        var bounds: [(Int, Int)] = [], weights: [[Int32]] = []
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
            bounds.append((xmin, Swift.max(xmax, 0)))
            weights.append(k.map { w in Int32(w < 0 ? -0.5 + w * Double(1 << precision) : 0.5 + w * Double(1 << precision)) })
        }
        return (bounds, weights)
    }

    private static func clip8(_ sum: Int32) -> UInt8 {
        let v = sum >> 22
        return v < 0 ? 0 : v > 255 ? 255 : UInt8(v)
    }

    private func bilinear(_ outWidth: Int, _ outHeight: Int) -> Image8 {
        let start: Int32 = 1 << 21
        var source = self
        let vertical = Self.coefficients(input: height, output: outHeight)
        if outWidth != width {
            // Horizontal pass over the rows the vertical pass will read.
            let first = vertical.bounds.first!.start, last = vertical.bounds.last!.start + vertical.bounds.last!.count
            let (bounds, weights) = Self.coefficients(input: width, output: outWidth)
            var out = [UInt8](repeating: 0, count: outWidth * (last - first) * channels)
            for y in first..<last {
                for x in 0..<outWidth {
                    for c in 0..<channels {
                        var sum = start
                        for (i, w) in weights[x].enumerated() { sum &+= Int32(pixels[(y * width + bounds[x].start + i) * channels + c]) &* w }
                        out[((y - first) * outWidth + x) * channels + c] = Self.clip8(sum)
                    }
                }
            }
            source = Image8(width: outWidth, height: last - first, channels: channels, pixels: out)
            if outHeight == height { return source }
            return source.verticalPass(outHeight, vertical.bounds.map { ($0.start - first, $0.count) }, vertical.weights)
        }
        return source.verticalPass(outHeight, vertical.bounds, vertical.weights)
    }

    private func verticalPass(_ outHeight: Int, _ bounds: [(start: Int, count: Int)], _ weights: [[Int32]]) -> Image8 {
        let start: Int32 = 1 << 21
        var out = [UInt8](repeating: 0, count: width * outHeight * channels)
        for y in 0..<outHeight {
            for x in 0..<width {
                for c in 0..<channels {
                    var sum = start
                    for (i, w) in weights[y].enumerated() { sum &+= Int32(pixels[((bounds[y].start + i) * width + x) * channels + c]) &* w }
                    out[(y * width + x) * channels + c] = Self.clip8(sum)
                }
            }
        }
        return Image8(width: width, height: outHeight, channels: channels, pixels: out)
    }
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
    public func apply(_ pixels: [UInt8], channels: Int, into output: UnsafeMutableBufferPointer<Float>) {
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
