import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a `.npy` / `.npz` file cannot be read; always names the file.
public struct NPYError: Error, CustomStringConvertible, Equatable, Sendable {
    public let path: String
    public let detail: String
    public init(path: String, detail: String) {
        self.path = path
        self.detail = detail
    }
    public var description: String { "\(path): \(detail)" }
}

/// The element types bnkit reads from NumPy files.
public enum NPYType: String, Sendable, CaseIterable {
    case bool = "b1"
    case int8 = "i1", int16 = "i2", int32 = "i4", int64 = "i8"
    case uint8 = "u1", uint16 = "u2", uint32 = "u4", uint64 = "u8"
    case float16 = "f2", float32 = "f4", float64 = "f8"

    public var size: Int { Int(rawValue.dropFirst())! }
    /// Integer (and boolean) data: pixels, scaled by 1/255 by default like IDX.
    public var isInteger: Bool { !rawValue.hasPrefix("f") }
}

/// A `.npy` header: `descr`, `fortran_order` and `shape`, parsed strictly.
public struct NPYHeader: Equatable, Sendable {
    public var type: NPYType
    public var bigEndian: Bool
    public var shape: [Int]
    /// Where the data starts (after the magic, version, length and header text).
    public var dataOffset: Int

    /// Bytes of data the shape calls for (checked against overflow).
    public var dataSize: Int? {
        var count = 1
        for d in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            count = product
        }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: type.size)
        return overflow ? nil : bytes
    }

    /// Parses the header at the start of `bytes` of a file of `fileSize` bytes; the data
    /// must fill the rest of the file exactly.
    public static func parse(_ bytes: UnsafeRawBufferPointer, fileSize: Int, path: String) throws(NPYError) -> NPYHeader {
        func fail(_ detail: String) -> NPYError { NPYError(path: path, detail: detail) }
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw fail("not a NumPy .npy file (no \\x93NUMPY signature)") }
        let major = bytes[6], minor = bytes[7]
        guard (1...3).contains(major), minor == 0 else { throw fail("unsupported .npy format version \(major).\(minor)") }
        let lengthSize = major == 1 ? 2 : 4
        guard bytes.count >= 8 + lengthSize else { throw fail("truncated .npy header") }
        var length = 0
        for i in 0..<lengthSize { length |= Int(bytes[8 + i]) << (8 * i) }
        let start = 8 + lengthSize
        guard length <= 1 << 20 else { throw fail(".npy header of \(length) bytes (over the 1 MiB limit)") }
        guard start + length <= bytes.count, start + length <= fileSize else { throw fail("truncated .npy header (\(length) bytes declared)") }
        guard let text = String(bytes: bytes[start..<(start + length)], encoding: major == 3 ? .utf8 : .ascii) else {
            throw fail(".npy header is not \(major == 3 ? "UTF-8" : "ASCII") text")
        }
        var parser = DictionaryParser(text: Array(text.unicodeScalars))
        let entries: [String: DictionaryParser.Value]
        do { entries = try parser.parse() } catch { throw fail("malformed .npy header: \((error as? DictionaryParser.Failure)?.reason ?? "?") in \(text.trimmingCharacters(in: .whitespacesAndNewlines).prefix(200))") }
        guard Set(entries.keys) == ["descr", "fortran_order", "shape"] else {
            throw fail(".npy header must have exactly 'descr', 'fortran_order' and 'shape', found \(entries.keys.sorted())")
        }
        guard case .string(let descr)? = entries["descr"] else { throw fail("'descr' is not a string (structured arrays are not read)") }
        guard case .bool(let fortran)? = entries["fortran_order"] else { throw fail("'fortran_order' is not True or False") }
        guard case .tuple(let shape)? = entries["shape"] else { throw fail("'shape' is not a tuple of sizes") }
        guard !fortran else { throw fail("Fortran-order arrays are not read (save with numpy.ascontiguousarray)") }
        guard let order = descr.first, "<>|=".contains(order), let type = NPYType(rawValue: String(descr.dropFirst())) else {
            throw fail("unsupported element type '\(descr)' (bool, int8…int64, uint8…uint64, float16, float32, float64; object arrays are never read)")
        }
        guard !shape.isEmpty else { throw fail("a scalar array (shape ()); expected N samples") }
        let bigEndian = order == ">"
        let header = NPYHeader(type: type, bigEndian: bigEndian, shape: shape, dataOffset: start + length)
        guard let size = header.dataSize else { throw fail("shape \(shape) is too large") }
        guard fileSize - header.dataOffset == size else {
            throw fail("shape \(shape) of \(descr) needs \(size) bytes of data, the file has \(fileSize - header.dataOffset)")
        }
        return header
    }
}

/// The Python literal subset NumPy writes: `{'key': value, ...}` with strings, True/False
/// and tuples of non-negative integers. Nothing is evaluated.
struct DictionaryParser {
    enum Value: Equatable { case string(String), bool(Bool), tuple([Int]) }
    struct Failure: Error { let reason: String }

    let text: [Unicode.Scalar]
    var i = 0

    init(text: [Unicode.Scalar]) { self.text = text }

    mutating func skipSpace() { while i < text.count, text[i] == " " || text[i] == "\n" || text[i] == "\t" { i += 1 } }
    mutating func expect(_ c: Unicode.Scalar) throws {
        skipSpace()
        guard i < text.count, text[i] == c else { throw Failure(reason: "expected '\(c)'") }
        i += 1
    }
    mutating func peek() -> Unicode.Scalar? { skipSpace(); return i < text.count ? text[i] : nil }

    mutating func string() throws -> String {
        skipSpace()
        guard i < text.count, text[i] == "'" || text[i] == "\"" else { throw Failure(reason: "expected a string") }
        let quote = text[i]
        i += 1
        var out = ""
        while i < text.count, text[i] != quote {
            guard text[i] != "\\", out.count < 256 else { throw Failure(reason: "unsupported string") }
            out.unicodeScalars.append(text[i])
            i += 1
        }
        guard i < text.count else { throw Failure(reason: "unterminated string") }
        i += 1
        return out
    }

    mutating func integer() throws -> Int {
        skipSpace()
        var digits = ""
        while i < text.count, text[i].properties.numericType == .decimal, text[i].isASCII { digits.unicodeScalars.append(text[i]); i += 1 }
        if i < text.count, text[i] == "L" { i += 1 }  // Python 2's long suffix
        guard !digits.isEmpty, digits.count <= 18, let value = Int(digits) else { throw Failure(reason: "expected a size") }
        return value
    }

    mutating func value() throws -> Value {
        switch peek() {
        case "'", "\"": return .string(try string())
        case "(":
            i += 1
            var items: [Int] = []
            while peek() != ")" {
                guard items.count < 32 else { throw Failure(reason: "too many dimensions") }
                items.append(try integer())
                if peek() == "," { i += 1 } else { break }
            }
            try expect(")")
            return .tuple(items)
        default:
            for (word, value) in [("True", true), ("False", false)] where text[i...].starts(with: word.unicodeScalars) {
                i += word.unicodeScalars.count
                return .bool(value)
            }
            throw Failure(reason: "unexpected value")
        }
    }

    mutating func parse() throws -> [String: Value] {
        try expect("{")
        var entries: [String: Value] = [:]
        while peek() != "}" {
            let key = try string()
            try expect(":")
            guard entries[key] == nil else { throw Failure(reason: "key '\(key)' twice") }
            entries[key] = try value()
            guard entries.count <= 8 else { throw Failure(reason: "too many keys") }
            if peek() == "," { i += 1 } else { break }
        }
        try expect("}")
        skipSpace()
        guard i == text.count else { throw Failure(reason: "text after the dictionary") }
        return entries
    }
}

/// A `.npy` file, memory-mapped (a file larger than memory is read as it is used):
/// N samples of shape `shape[1...]`, converted to Float a range at a time.
public final class NPYFile: @unchecked Sendable {
    public let path: String
    public let header: NPYHeader
    private let base: UnsafeRawPointer?
    private let mappedSize: Int

    public var itemCount: Int { header.shape[0] }
    public var itemShape: [Int] { Array(header.shape.dropFirst()) }
    public var itemSize: Int { itemShape.reduce(1, *) }

    /// Maps `path` and parses its header; `shownAs` names the file in errors (an `.npz` member).
    public init(path: String, shownAs: String? = nil) throws(NPYError) {
        let name = shownAs ?? path
        self.path = name
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw NPYError(path: name, detail: String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { throw NPYError(path: name, detail: "not a regular file") }
        let size = Int(info.st_size)
        guard size > 0 else { throw NPYError(path: name, detail: "the file is empty") }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw NPYError(path: name, detail: "cannot map the file: \(String(cString: strerror(errno)))")
        }
        do {
            header = try NPYHeader.parse(UnsafeRawBufferPointer(start: mapped, count: min(size, 1 << 20 + 16)), fileSize: size, path: name)
        } catch {
            munmap(mapped, size)
            throw error
        }
        base = UnsafeRawPointer(mapped)
        mappedSize = size
        madvise(mapped, size, MADV_SEQUENTIAL)
    }

    deinit { if let base { munmap(UnsafeMutableRawPointer(mutating: base), mappedSize) } }

    /// Samples `items` as Float, each element `Float(value) * multiplier / divisor` (the
    /// same arithmetic as the IDX reader), into the start of `out`.
    public func floats(items: Range<Int>, into out: UnsafeMutableBufferPointer<Float>, multiplier: Float = 1, divisor: Float = 1) {
        let first = items.lowerBound * itemSize, count = items.count * itemSize
        precondition(items.upperBound <= itemCount && out.count >= count)
        let data = base! + header.dataOffset
        let swap = header.bigEndian
        func each<T>(_: T.Type, _ convert: (T) -> Float) {
            let source = data + first * MemoryLayout<T>.size
            for j in 0..<count { out[j] = convert(source.loadUnaligned(fromByteOffset: j * MemoryLayout<T>.size, as: T.self)) * multiplier / divisor }
        }
        switch header.type {
        case .bool, .uint8: each(UInt8.self) { Float($0) }
        case .int8: each(Int8.self) { Float($0) }
        case .int16: each(Int16.self) { Float(swap ? $0.byteSwapped : $0) }
        case .uint16: each(UInt16.self) { Float(swap ? $0.byteSwapped : $0) }
        case .int32: each(Int32.self) { Float(swap ? $0.byteSwapped : $0) }
        case .uint32: each(UInt32.self) { Float(swap ? $0.byteSwapped : $0) }
        case .int64: each(Int64.self) { Float(swap ? $0.byteSwapped : $0) }
        case .uint64: each(UInt64.self) { Float(swap ? $0.byteSwapped : $0) }
        case .float16: each(UInt16.self) { Float(Float16(bitPattern: swap ? $0.byteSwapped : $0)) }
        case .float32: each(UInt32.self) { Float(bitPattern: swap ? $0.byteSwapped : $0) }
        case .float64: each(UInt64.self) { Float(Double(bitPattern: swap ? $0.byteSwapped : $0)) }
        }
    }
}
