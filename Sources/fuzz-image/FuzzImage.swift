// Fuzz target: PNG and JPEG decoding (libpng and libjpeg-turbo behind CImageDecode, their errors
// caught by setjmp there), on the bytes as a file, as bnrun reads images; then the resizing and
// preprocessing every decoded image goes through. An image is either refused with a message or
// decoded whole: width × height × channels samples, each within its depth. A decoder kept from
// input to input (as bnrun keeps one a thread) must resize to the same pixels as a fresh decode.
import Foundation
import FuzzSupport
import Images

private let file = URL(fileURLWithPath: FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory())
    .appendingPathComponent("bnkit-fuzz-image-\(getpid())")

nonisolated(unsafe) private let kept = ImageDecoder(maxPixels: 1 << 20)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzImage(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard (try? Data(UnsafeRawBufferPointer(start: data, count: size)).write(to: file)) != nil else { return 0 }
    for channels in [3, 1] {
        // A megapixel at most: the limit itself is checked from the header, before any pixel.
        let image: Image8
        do {
            image = try Image8.decode(path: file.path, channels: channels, maxPixels: 1 << 20)
        } catch {
            precondition("\(error)".hasPrefix(file.path + ": cannot read the image: "), "refusal without the file: \(error)")
            continue
        }
        precondition(image.width > 0 && image.height > 0 && image.width * image.height <= 1 << 20, "size \(image.width)x\(image.height)")
        precondition(image.channels == channels, "\(image.channels) channels for \(channels)")
        precondition(image.depth == 8 && image.pixels.allSatisfy { $0 <= 255 } || image.depth == 16 && channels == 1, "depth \(image.depth)")
        for method in ResizeMethod.allCases {
            let small = image.resized(width: 7, height: 5, method: method)
            precondition(small.pixels.count == 7 * 5 * channels, "resized to \(small.pixels.count) samples")
            var values = [Float](repeating: .nan, count: small.pixels.count)
            values.withUnsafeMutableBufferPointer { Preprocessing.tf.apply(small.pixels, channels: channels, into: $0) }
            precondition(values.allSatisfy { $0.isFinite }, "non-finite input")
            let loaded = try? kept.load(path: file.path, channels: channels, width: 7, height: 5, method: method)
            precondition(loaded == small, "the kept decoder resized to other pixels (\(method))")
        }
    }
    return 0
}

@main
struct Main {
    static func main() throws {
        try runFuzzTarget { data, size in fuzzImage(data, size) }
    }
}
