// Fuzz target: the .npy reader (header parser, size checks, element conversion), on
// the bytes as a file: NPYFile maps a file, as bnrun does. Every array it accepts must be
// readable end to end, and its size must be exactly what its header declares. Inputs that
// start with a zip signature are read as .npz archives (ZIPFoundation's parsing, the size
// checks before inflating, each member then as a .npy).
import Foundation
import FuzzSupport
import NumPy

private let file = URL(fileURLWithPath: FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory())
    .appendingPathComponent("bnkit-fuzz-npy-\(getpid()).npy")

private let archive = URL(fileURLWithPath: file.path + ".npz")

/// A zip archive (`numpy.savez`): every array it lists opens (its member checked and inflated
/// within the declared sizes, then read as a .npy) or is refused with a message naming the archive.
private func fuzzNPZ(_ bytes: UnsafeRawBufferPointer) {
    guard (try? Data(bytes).write(to: archive)) != nil else { return }
    guard let names = try? NPZ.arrayNames(path: archive.path) else { return }
    for name in names.prefix(4) {
        do {
            let array = try NPZ.open(path: archive.path, array: name)
            if array.itemCount > 0, (1...4096).contains(array.itemSize) {
                var out = [Float](repeating: 0, count: array.itemSize)
                out.withUnsafeMutableBufferPointer { array.floats(items: 0..<1, into: $0) }
            }
        } catch {
            precondition("\(error)".hasPrefix(archive.path), "refusal without the archive: \(error)")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNPY(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    if size >= 4, bytes[0] == 0x50, bytes[1] == 0x4B { fuzzNPZ(bytes); return 0 }
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
