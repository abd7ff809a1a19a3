import CBNKitDeflate
import CBNKitZlib
import Foundation
#if canImport(Glibc)
import Glibc
#endif

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
    /// Gzip files that inflate to at most this many bytes (16 MiB) are inflated at once;
    /// larger ones (a 60,000-image MNIST file, 47 MB) stream, so memory stays flat.
    public static let wholeInflateLimit = 16 << 20

    private let source: ByteSource

    /// Opens `path`. A gzip file that inflates to at most `inflateWholeUpTo` bytes
    /// (default 16 MiB) is inflated at once, by libdeflate; larger ones stream
    /// through zlib (0 streams every file; the results are the same either way).
    public init(path: String, inflateWholeUpTo: Int = IDXStream.wholeInflateLimit) throws(IDXError) {
        self.path = path
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw .unreadable(path: path, detail: FileManager.default.fileExists(atPath: path) ? "permission denied or not a regular file" : "no such file")
        }
        let magic = [UInt8]((try? handle.read(upToCount: 2)) ?? Data())
        try? handle.seek(toOffset: 0)
        let source: ByteSource
        if magic == [0x1F, 0x8B] {
            // Small files are inflated at once by libdeflate (2.4 times zlib's speed on MNIST);
            // large ones, and any file libdeflate does not take as is, stream through zlib.
            if let whole = InflatedSource(handle: handle, limit: inflateWholeUpTo) {
                source = whole
            } else {
                try? handle.seek(toOffset: 0)
                source = try GzipSource(handle: handle, path: path)
            }
        } else {
            source = PlainSource(handle: handle)
        }
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
        var values: [Float] = []
        try next(count, into: &values, multiplier: multiplier, divisor: divisor)
        return values
    }

    /// Reads the next up to `count` items into `values` (replacing what it held and
    /// reusing its storage, so a loop over a large file does not allocate per tile);
    /// `values` is empty once every item was read.
    public func next(_ count: Int, into values: inout [Float], multiplier: Float = 1, divisor: Float = 1) throws(IDXError) {
        let items = max(0, min(count, itemCount - position))
        let byteCount = items * itemSize * dataType.size
        let elements = items * itemSize
        if values.count != elements {
            values.removeAll(keepingCapacity: true)
            values.append(contentsOf: repeatElement(0, count: elements))
        }
        let type = dataType
        // Converted straight from the source's memory where it has the bytes (an inflated file).
        let read = try source.withNext(byteCount, scratch: &bytes, path: path) { raw in
            if raw.count == byteCount {
                values.withUnsafeMutableBufferPointer { target in
                    IDXArray.convert(raw, type: type, elements: 0..<elements, into: target, multiplier: multiplier, divisor: divisor)
                }
            }
            return raw.count
        }
        guard read == byteCount else {
            throw .sizeMismatch(path: path, dimensions: dimensions, expectedBytes: itemCount * itemSize * dataType.size,
                                actualBytes: position * itemSize * dataType.size + read)
        }
        position += items
        if items > 0, position == itemCount { try source.finish(path: path, dimensions: dimensions, expected: itemCount * itemSize * dataType.size) }
    }

    /// The raw bytes of the last tile (reused).
    private var bytes: [UInt8] = []
}

protocol ByteSource: AnyObject {
    /// Up to `count` bytes (fewer only at the end of the data) into the start of
    /// `buffer` (grown when needed, never shrunk); returns how many were read.
    func read(_ count: Int, into buffer: inout [UInt8], path: String) throws(IDXError) -> Int
    /// Checks nothing follows the declared data.
    func finish(path: String, dimensions: [Int], expected: Int) throws(IDXError)
    /// The next up to `count` bytes, passed to `body`: in place where the source holds
    /// them in memory, else read into `scratch` first.
    func withNext<R>(_ count: Int, scratch: inout [UInt8], path: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) throws(IDXError) -> R
}

extension ByteSource {
    func withNext<R>(_ count: Int, scratch: inout [UInt8], path: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) throws(IDXError) -> R {
        let n = try read(count, into: &scratch, path: path)
        return scratch.withUnsafeBufferPointer { body(UnsafeBufferPointer(rebasing: $0[0..<n])) }
    }

    /// Up to `count` bytes, as a new array.
    func read(_ count: Int, path: String) throws(IDXError) -> [UInt8] {
        var buffer: [UInt8] = []
        let read = try read(count, into: &buffer, path: path)
        return Array(buffer[0..<read])
    }
}

/// Grows `buffer` to hold at least `count` bytes.
private func reserve(_ buffer: inout [UInt8], _ count: Int) {
    if buffer.count < count { buffer.append(contentsOf: repeatElement(0, count: count - buffer.count)) }
}

final class PlainSource: ByteSource {
    let handle: FileHandle
    let fileSize: Int

    init(handle: FileHandle) {
        self.handle = handle
        fileSize = Int((try? handle.seekToEnd()) ?? 0)
        try? handle.seek(toOffset: 0)
    }

    func read(_ count: Int, into buffer: inout [UInt8], path: String) throws(IDXError) -> Int {
        reserve(&buffer, count)
        // Straight into the buffer with read(2): no intermediate Data per tile.
        let fd = handle.fileDescriptor
        var filled = 0
        while filled < count {
            let n = buffer.withUnsafeMutableBytes { target in Glibc.read(fd, target.baseAddress! + filled, count - filled) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw .unreadable(path: path, detail: "read failed") }
            if n == 0 { break }
            filled += n
        }
        return filled
    }

    func finish(path: String, dimensions: [Int], expected: Int) throws(IDXError) {}

    deinit { try? handle.close() }
}

/// A small gzip file inflated whole by libdeflate, then read from memory. Only
/// when libdeflate inflates it cleanly to exactly the size its trailer states,
/// from one gzip member that is all of the file; anything else (damage, a size
/// that lies, trailing bytes) is left to `GzipSource`, whose checks and messages
/// apply as for large files. Holds at most `limit` bytes of output.
final class InflatedSource: ByteSource {
    private let data: LargeBuffer
    private let size: Int
    private var offset = 0

    init?(handle: FileHandle, limit: Int) {
        let fd = handle.fileDescriptor
        var status = stat()
        guard fstat(fd, &status) == 0, status.st_size >= 18, status.st_size <= limit else { return nil }
        let n = Int(status.st_size)
        guard let input = LargeBuffer(bytes: n), input.readAll(from: fd, count: n) else { return nil }
        // ISIZE: the uncompressed size modulo 2^32, little-endian, in the last four bytes.
        let tail = input.bytes + (n - 4)
        let size = Int(tail[0]) | Int(tail[1]) << 8 | Int(tail[2]) << 16 | Int(tail[3]) << 24
        guard size <= limit, let output = LargeBuffer(bytes: max(size, 1)),
              let decompressor = libdeflate_alloc_decompressor() else { return nil }
        defer { libdeflate_free_decompressor(decompressor) }
        var consumed = 0, produced = 0
        let result = libdeflate_gzip_decompress_ex(decompressor, input.bytes, n, output.bytes, size, &consumed, &produced)
        guard result == LIBDEFLATE_SUCCESS, consumed == n, produced == size else { return nil }
        data = output
        self.size = size
    }

    func read(_ count: Int, into buffer: inout [UInt8], path: String) throws(IDXError) -> Int {
        let n = min(count, size - offset)
        reserve(&buffer, n)
        buffer.withUnsafeMutableBytes { target in
            target.baseAddress!.copyMemory(from: data.bytes + offset, byteCount: n)
        }
        offset += n
        return n
    }

    func withNext<R>(_ count: Int, scratch: inout [UInt8], path: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) throws(IDXError) -> R {
        let n = min(count, size - offset)
        defer { offset += n }
        return body(UnsafeBufferPointer(start: data.bytes + offset, count: n))
    }

    func finish(path: String, dimensions: [Int], expected: Int) throws(IDXError) {
        if offset < size {
            throw .gzipTooLong(path: path, declared: expected)
        }
    }
}

/// Anonymous memory from mmap, asked for as transparent huge pages: a few
/// faults for megabytes instead of one per 4 KiB page (these buffers live for
/// one run; page faults, not copying, dominate a fresh process's cost).
final class LargeBuffer {
    let bytes: UnsafeMutablePointer<UInt8>
    private let length: Int

    init?(bytes count: Int) {
        let huge = 2 << 20
        length = (count + huge - 1) / huge * huge
        guard let memory = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), memory != MAP_FAILED else { return nil }
        _ = madvise(memory, length, 14 /* MADV_HUGEPAGE */)
        bytes = memory.assumingMemoryBound(to: UInt8.self)
    }

    /// Reads exactly `count` bytes from the start of `fd`.
    func readAll(from fd: Int32, count: Int) -> Bool {
        var done = 0
        while done < count {
            let n = pread(fd, bytes + done, count - done, off_t(done))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            done += n
        }
        return true
    }

    deinit { munmap(bytes, length) }
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

    func read(_ count: Int, into output: inout [UInt8], path: String) throws(IDXError) -> Int {
        reserve(&output, count)
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
        return filled
    }

    func finish(path: String, dimensions: [Int], expected: Int) throws(IDXError) {
        // One more byte must not exist.
        let extra = try read(1, path: path)
        if !extra.isEmpty {
            throw .gzipTooLong(path: path, declared: expected)
        }
    }
}
