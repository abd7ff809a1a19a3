import CBNKitZlib
import Foundation

/// Reads an IDX file item by item (images, labels, ...), plain or gzipped,
/// holding only the bytes asked for: memory stays flat whatever the file's
/// size. The header is checked against the data exactly, as `IDXReader`
/// does: a plain file's size up front, a gzip stream's length as it is read
/// (it may neither end early nor hold more than the header declares).
public final class IDXStream {
    public let path: String
    public let dataType: IDXDataType
    public let dimensions: [Int]
    public var itemCount: Int { dimensions[0] }
    public var itemSize: Int { dimensions.dropFirst().reduce(1, *) }
    /// Items read so far.
    public private(set) var position = 0

    private let source: ByteSource

    public init(path: String) throws(IDXError) {
        self.path = path
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw .unreadable(path: path, detail: FileManager.default.fileExists(atPath: path) ? "permission denied or not a regular file" : "no such file")
        }
        let magic = [UInt8]((try? handle.read(upToCount: 2)) ?? Data())
        try? handle.seek(toOffset: 0)
        let source: ByteSource = magic == [0x1F, 0x8B] ? try GzipSource(handle: handle, path: path) : PlainSource(handle: handle)
        let prefix = try source.read(4, path: path)
        guard prefix.count == 4 else { throw .tooShort(path: path, size: prefix.count) }
        guard prefix[0] == 0, prefix[1] == 0 else { throw .badMagic(path: path) }
        guard let type = IDXDataType(rawValue: prefix[2]) else { throw .unknownType(path: path, code: prefix[2]) }
        let rank = Int(prefix[3])
        guard rank >= 1 else { throw .badRank(path: path, rank: rank) }
        let dims = try source.read(4 * rank, path: path)
        guard dims.count == 4 * rank else { throw .tooShort(path: path, size: 4 + dims.count) }
        var dimensions: [Int] = []
        var total = type.size
        for d in 0..<rank {
            let o = 4 * d
            let dim = Int(UInt32(dims[o]) << 24 | UInt32(dims[o + 1]) << 16 | UInt32(dims[o + 2]) << 8 | UInt32(dims[o + 3]))
            dimensions.append(dim)
            let (product, overflow) = total.multipliedReportingOverflow(by: dim)
            total = overflow ? Int.max : product
        }
        guard total <= IDXReader.maxPayloadBytes, itemSizeIsBounded(dimensions) else { throw .sizeOverflow(path: path, dimensions: dimensions) }
        if let plain = source as? PlainSource {
            let actual = plain.fileSize - (4 + 4 * rank)
            guard actual == total else {
                throw .sizeMismatch(path: path, dimensions: dimensions, expectedBytes: total, actualBytes: max(actual, 0))
            }
        }
        self.dataType = type
        self.dimensions = dimensions
        self.source = source
        // No items to read: check now that nothing follows the header.
        if total == 0 { try source.finish(path: path, dimensions: dimensions, expected: 0) }
    }

    /// The next up to `count` items, as Float (`Float(value) * multiplier / divisor`).
    public func next(_ count: Int, multiplier: Float = 1, divisor: Float = 1) throws(IDXError) -> [Float] {
        let items = min(count, itemCount - position)
        if items <= 0 { return [] }
        let bytes = try source.read(items * itemSize * dataType.size, path: path)
        guard bytes.count == items * itemSize * dataType.size else {
            throw .sizeMismatch(path: path, dimensions: dimensions, expectedBytes: itemCount * itemSize * dataType.size,
                                actualBytes: position * itemSize * dataType.size + bytes.count)
        }
        position += items
        if position == itemCount { try source.finish(path: path, dimensions: dimensions, expected: itemCount * itemSize * dataType.size) }
        let array = IDXArray(dataType: dataType, dimensions: [items] + Array(dimensions.dropFirst()), payload: bytes)
        return array.floats(0..<array.count, multiplier: multiplier, divisor: divisor)
    }
}

protocol ByteSource: AnyObject {
    /// Up to `count` bytes (fewer only at the end of the data).
    func read(_ count: Int, path: String) throws(IDXError) -> [UInt8]
    /// Checks nothing follows the declared data.
    func finish(path: String, dimensions: [Int], expected: Int) throws(IDXError)
}

final class PlainSource: ByteSource {
    let handle: FileHandle
    let fileSize: Int

    init(handle: FileHandle) {
        self.handle = handle
        fileSize = Int((try? handle.seekToEnd()) ?? 0)
        try? handle.seek(toOffset: 0)
    }

    func read(_ count: Int, path: String) throws(IDXError) -> [UInt8] {
        do {
            return [UInt8](try handle.read(upToCount: count) ?? Data())
        } catch {
            throw .unreadable(path: path, detail: "read failed")
        }
    }

    func finish(path: String, dimensions: [Int], expected: Int) throws(IDXError) {}

    deinit { try? handle.close() }
}

final class GzipSource: ByteSource {
    let handle: FileHandle
    private var stream = z_stream()
    private var input = [UInt8]()
    private var inputOffset = 0
    private var ended = false
    private var produced = 0

    init(handle: FileHandle, path: String) throws(IDXError) {
        self.handle = handle
        guard bnkit_inflateInit2(&stream, 15 + 16) == Z_OK else { throw .gzip(path: path, detail: "zlib could not start") }
    }

    deinit {
        inflateEnd(&stream)
        try? handle.close()
    }

    func read(_ count: Int, path: String) throws(IDXError) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count && !ended {
            if inputOffset == input.count {
                let chunk = (try? handle.read(upToCount: 1 << 16)) ?? Data()
                if chunk.isEmpty { throw .gzip(path: path, detail: "the compressed data ends early (truncated file)") }
                input = [UInt8](chunk)
                inputOffset = 0
            }
            let status: Int32 = input.withUnsafeMutableBufferPointer { inBuffer in
                output.withUnsafeMutableBufferPointer { outBuffer in
                    stream.next_in = inBuffer.baseAddress! + inputOffset
                    stream.avail_in = uInt(inBuffer.count - inputOffset)
                    stream.next_out = outBuffer.baseAddress! + filled
                    stream.avail_out = uInt(count - filled)
                    let status = inflate(&stream, Z_NO_FLUSH)
                    inputOffset = inBuffer.count - Int(stream.avail_in)
                    filled = count - Int(stream.avail_out)
                    return status
                }
            }
            if status == Z_STREAM_END { ended = true } else if status != Z_OK && status != Z_BUF_ERROR {
                throw .gzip(path: path, detail: stream.msg.map { String(cString: $0) } ?? "error \(status)")
            }
        }
        produced += filled
        return Array(output[0..<filled])
    }

    func finish(path: String, dimensions: [Int], expected: Int) throws(IDXError) {
        // One more byte must not exist.
        let extra = try read(1, path: path)
        if !extra.isEmpty {
            throw .gzip(path: path, detail: "decompresses to more than the \(expected) data bytes its IDX header declares")
        }
    }
}
