// Fuzz target: the IDX readers. The whole-file reader on every input, plain
// and gzip (detected by content; the seeds include gzipped files); the
// streaming reader bnrun uses on every plain input, where both must agree.
import Foundation
import FuzzSupport
import IDX

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIDX(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Data(bytes: data, count: size)
    let whole = try? IDXReader.parse(bytes, path: "fuzz")
    if let array = whole {
        // Every element must be readable.
        if array.count > 0 {
            _ = array.value(at: array.count - 1)
            _ = array.floats(0..<min(array.count, 16), divisor: 255)
        }
        _ = array.integers()
    }
    // The streaming reader reads a file: it must accept exactly what the whole-file reader accepts.
    // Plain inputs only (gzip inputs inflate to large buffers, which under ASan grow the fuzzer's
    // memory past its limit within a million runs; the gzip stream has its own unit tests).
    guard !(bytes.starts(with: [0x1F, 0x8B])), (try? bytes.write(to: streamFile)) != nil else { return 0 }
    var streamed: [Float]? = nil
    if let stream = try? IDXStream(path: streamFile.path) {
        var values: [Float] = []
        var failed = false
        // Reads of at most 64 KiB, at most 256 of them (a header may declare billions of items);
        // an input that needs more is not compared.
        let itemBytes = max(stream.itemSize * stream.dataType.size, 1)
        let step = max(1, min(max(7, (stream.itemCount + 255) / 256), (1 << 16) / itemBytes))
        var reads = 0
        while stream.position < stream.itemCount && !failed && reads < 256 {
            if let tile = try? stream.next(step) { values += tile } else { failed = true }
            reads += 1
        }
        if stream.position < stream.itemCount && !failed { return 0 }
        if !failed { streamed = values }
    }
    if let whole {
        precondition(streamed?.map(\.bitPattern) == whole.floats(0..<whole.count).map(\.bitPattern), "stream and whole-file reader disagree")
    } else {
        precondition(streamed == nil, "the stream accepted what the whole-file reader refused")
    }
    return 0
}

private let streamFile = URL(fileURLWithPath: FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory())
    .appendingPathComponent("bnkit-fuzz-idx-\(getpid()).idx")

@main
struct Main {
    static func main() throws {
        try runFuzzTarget { data, size in fuzzIDX(data, size) }
    }
}
