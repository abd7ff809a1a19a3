// Fuzz target: the bnkit .bin reader. Built with libFuzzer by tools/fuzz.sh
// (-sanitize=fuzzer,address -DFUZZING); a plain build replays files given
// as arguments (regression inputs).
import Foundation
import NativeFormat

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNative(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Data(bytes: data, count: size)
    check(bytes)
    // Checksums stop almost every mutation at the door; also decode the input
    // with its checksums repaired, so the structural checks behind them are fuzzed too.
    if let repaired = repairingChecksums(bytes) { check(repaired) }
    return 0
}

private func check(_ bytes: Data) {
    if let model = try? NativeFormat.decode(bytes, path: "fuzz") {
        // Whatever decodes must re-encode and decode to the same model.
        let again = try! NativeFormat.decode(try! NativeFormat.encode(model), path: "fuzz")
        precondition(again.graph == model.graph, "re-encoded model differs")
    }
}

private func repairingChecksums(_ input: Data) -> Data? {
    var bytes = [UInt8](input)
    guard bytes.count >= 64 else { return nil }
    func u64(_ o: Int) -> Int? {
        let v = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[o + $1]) << (8 * UInt64($1)) }
        return v <= UInt64(bytes.count) ? Int(v) : nil
    }
    func put(_ value: UInt32, _ o: Int) { for k in 0..<4 { bytes[o + k] = UInt8((value >> (8 * UInt32(k))) & 0xFF) } }
    guard let headerLength = u64(24), let dataOffset = u64(32), 64 + headerLength <= bytes.count, dataOffset <= bytes.count else { return nil }
    put(CRC32C.checksum(bytes[64..<(64 + headerLength)]), 48)
    put(CRC32C.checksum(bytes[dataOffset...]), 52)
    put(CRC32C.checksum(bytes[0..<56]), 56)
    return Data(bytes)
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32) -> Int32
#endif

@main
struct Main {
    static func main() throws {
        #if FUZZING
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, { data, size in fuzzNative(data, size) }))
        #else
        // Replays the files given as arguments (regression inputs, corpora).
        for path in CommandLine.arguments.dropFirst() {
            let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            _ = data.withUnsafeBufferPointer { fuzzNative($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
        }
        #endif
    }
}
