import CCRC32C

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the CPU's CRC32 instruction
/// where it has one (SSE4.2, arm64's CRC extension), else slicing-by-8 tables (CCRC32C).
/// Check value: `CRC32C.checksum("123456789".utf8) == 0xE3069283`.
public enum CRC32C {
    /// The CRC-32C of `bytes`.
    public static func checksum<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        if let result = bytes.withContiguousStorageIfAvailable({ checksum(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        let array = Array(bytes)
        return array.withUnsafeBytes { checksum($0) }
    }

    /// The CRC-32C of a raw buffer.
    public static func checksum(_ buffer: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = buffer.baseAddress else { return 0 }
        return bnk_crc32c(0, base, buffer.count)
    }

    /// The table version, whatever the CPU (for tests).
    public static func portableChecksum(_ buffer: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = buffer.baseAddress else { return 0 }
        return bnk_crc32c_portable(0, base, buffer.count)
    }

    /// What `checksum` uses here: "sse4.2", "armv8-crc" or "portable".
    public static var implementation: String { String(cString: bnk_crc32c_implementation()) }
}
