import CBNKitZlib
import Foundation

/// gzip decompression through zlib, with a hard cap on the output size.
enum Gzip {
    /// The two magic bytes every gzip member starts with.
    static func isGzip(_ data: Data) -> Bool {
        data.count >= 2 && data[data.startIndex] == 0x1F && data[data.startIndex + 1] == 0x8B
    }

    enum Failure: Error {
        case corrupt(String)
        case truncated
        case exceedsLimit
    }

    /// Decompresses `data`, refusing to produce more than `limit` bytes.
    static func decompress(_ data: Data, limit: Int) throws(Failure) -> [UInt8] {
        var stream = z_stream()
        guard bnkit_inflateInit2(&stream, 15 + 16) == Z_OK else { throw .corrupt("zlib could not start") }
        defer { inflateEnd(&stream) }
        var output = [UInt8]()
        let chunk = 1 << 16
        var buffer = [UInt8](repeating: 0, count: chunk)
        var status: Int32 = Z_OK
        let result: Failure? = data.withUnsafeBytes { (input: UnsafeRawBufferPointer) -> Failure? in
            stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(input.count)
            repeat {
                let produced: Int = buffer.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress
                    stream.avail_out = uInt(chunk)
                    status = inflate(&stream, Z_NO_FLUSH)
                    return chunk - Int(stream.avail_out)
                }
                if status != Z_OK && status != Z_STREAM_END {
                    if status == Z_BUF_ERROR { return .truncated }
                    let message = stream.msg.map { String(cString: $0) } ?? "error \(status)"
                    return .corrupt(message)
                }
                if output.count + produced > limit { return .exceedsLimit }
                output.append(contentsOf: buffer[0..<produced])
            } while status != Z_STREAM_END
            return nil
        }
        if let result { throw result }
        return output
    }
}

extension Gzip {
    /// Up to the first `count` decompressed bytes (fewer if the stream is shorter).
    static func decompressPrefix(_ data: Data, count: Int) throws(Failure) -> [UInt8] {
        var stream = z_stream()
        guard bnkit_inflateInit2(&stream, 15 + 16) == Z_OK else { throw .corrupt("zlib could not start") }
        defer { inflateEnd(&stream) }
        var buffer = [UInt8](repeating: 0, count: count)
        let failure: Failure? = data.withUnsafeBytes { (input: UnsafeRawBufferPointer) -> Failure? in
            stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(input.count)
            return buffer.withUnsafeMutableBufferPointer { out -> Failure? in
                stream.next_out = out.baseAddress
                stream.avail_out = uInt(count)
                while stream.avail_out > 0 {
                    let status = inflate(&stream, Z_NO_FLUSH)
                    if status == Z_STREAM_END { break }
                    if status == Z_BUF_ERROR { break }  // input exhausted: a short prefix
                    if status != Z_OK { return .corrupt(stream.msg.map { String(cString: $0) } ?? "error \(status)") }
                }
                return nil
            }
        }
        if let failure { throw failure }
        return Array(buffer[0..<(count - Int(stream.avail_out))])
    }
}
