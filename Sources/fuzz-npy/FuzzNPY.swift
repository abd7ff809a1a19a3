// Fuzz target: the .npy reader (header parser, size checks, element conversion), on
// the bytes as a file: NPYFile maps a file, as bnrun does. Every array it accepts must be
// readable end to end, and its size must be exactly what its header declares.
import Foundation
import FuzzSupport
import NumPy

private let file = URL(fileURLWithPath: FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory())
    .appendingPathComponent("bnkit-fuzz-npy-\(getpid()).npy")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNPY(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let parsed = try? NPYHeader.parse(bytes, fileSize: size, path: "fuzz")
    guard (try? Data(bytes).write(to: file)) != nil else { return 0 }
    let mapped = try? NPYFile(path: file.path)
    // The header parser alone and the mapped reader agree.
    precondition((parsed == nil) == (mapped == nil), "header parse and file read disagree")
    guard let mapped, let parsed else { return 0 }
    precondition(parsed.dataOffset + parsed.dataSize! == size, "accepted a size that does not match the file")
    if mapped.itemCount > 0, mapped.itemSize > 0 {
        let items = min(mapped.itemCount, max(1, 4096 / max(mapped.itemSize, 1)))
        var out = [Float](repeating: 0, count: items * mapped.itemSize)
        out.withUnsafeMutableBufferPointer { mapped.floats(items: 0..<items, into: $0, divisor: 255) }
        out.withUnsafeMutableBufferPointer {
            mapped.floats(items: (mapped.itemCount - 1)..<mapped.itemCount, into: UnsafeMutableBufferPointer(rebasing: $0[0..<mapped.itemSize]))
        }
    }
    return 0
}

@main
struct Main {
    static func main() throws {
        try runFuzzTarget { data, size in fuzzNPY(data, size) }
    }
}
