import Foundation
import NativeFormat

/// Metadata the CLIs write into a `.bin`: what made it, from what, when.
public func outputMetadata(producer: String, source path: String) -> [String: String] {
    var metadata = [
        "producer": producer,
        "source": URL(fileURLWithPath: path).lastPathComponent,
        "created": ISO8601DateFormatter().string(from: Date()),
    ]
    if let data = try? Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe) {
        metadata["source_crc32c"] = String(format: "%08x", data.withUnsafeBytes { CRC32C.checksum($0) })
        metadata["source_bytes"] = String(data.count)
    }
    return metadata
}
