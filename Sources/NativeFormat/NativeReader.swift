import BoundedJSON
import Foundation
import ModelIR

extension NativeFormat {
    /// Reads and fully validates a native model file. The file is memory-mapped
    /// and its float32 weights are used in place (the tensors are views of the
    /// mapping, which lives as long as they do); nothing is copied but the header.
    public static func read(path: String) throws(NativeFormatError) -> NativeModel {
        guard let file = MappedFile(path: path) else {
            throw .unreadable(path: path, detail: FileManager.default.fileExists(atPath: path) ? "permission denied or not a regular file" : "no such file")
        }
        return try Decoder(bytes: file.bytes, owner: file, path: path).decode()
    }

    /// Decodes a file image; `path` is used in errors only. Every count,
    /// offset, size and checksum is checked before use.
    public static func decode(_ data: Data, path: String = "<memory>") throws(NativeFormatError) -> NativeModel {
        let copy = AlignedBytes(data)
        return try Decoder(bytes: copy.bytes, owner: copy, path: path).decode()
    }
}

/// A file mapped read-only into memory (unmapped when the last user goes).
final class MappedFile {
    let bytes: UnsafeRawBufferPointer

    init?(path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { return nil }
        let size = Int(status.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), address != MAP_FAILED else { return nil }
        bytes = UnsafeRawBufferPointer(start: address, count: size)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }
}

extension MappedFile: ReleasableResidency {
    /// Drops the whole pages inside `range` (a part of this read-only private mapping, never
    /// written): the next read of them maps the file's bytes again.
    func releaseResidency(of range: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, let start = range.baseAddress, start >= base,
              start + range.count <= base + bytes.count else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = (Int(bitPattern: start) + page - 1) / page * page
        let end = (Int(bitPattern: start) + range.count) / page * page
        guard end > first, let address = UnsafeMutableRawPointer(bitPattern: first) else { return }
        _ = madvise(address, end - first, Int32(MADV_DONTNEED))
    }
}

/// A copy of a file image in 64-byte-aligned memory (for `decode(_:)`).
final class AlignedBytes {
    let bytes: UnsafeRawBufferPointer

    init(_ data: Data) {
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(data.count, 1), alignment: NativeFormat.alignment)
        data.copyBytes(to: memory.bindMemory(to: UInt8.self), count: data.count)
        bytes = UnsafeRawBufferPointer(rebasing: memory[0..<data.count])
    }

    deinit { bytes.baseAddress.map { UnsafeMutableRawPointer(mutating: $0).deallocate() } }
}

private struct Decoder {
    let bytes: UnsafeRawBufferPointer
    /// Keeps `bytes` alive for the tensors that view them.
    let owner: AnyObject
    let path: String

    func u32(_ offset: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + $1]) << (8 * $1) }
    }

    func u64(_ offset: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * $1) }
    }

    func layout(_ detail: String) -> NativeFormatError { .badLayout(path: path, detail: detail) }

    func decode() throws(NativeFormatError) -> NativeModel {
        let size = bytes.count
        guard size >= NativeFormat.magic.count, Array(bytes[0..<8]) == NativeFormat.magic else {
            if size < NativeFormat.magic.count && Array(bytes) == Array(NativeFormat.magic.prefix(size)) {
                throw .tooShort(path: path, size: size)
            }
            throw .badMagic(path: path)
        }
        guard size >= NativeFormat.preambleSize else { throw .tooShort(path: path, size: size) }
        guard CRC32C.checksum(bytes[0..<56]) == u32(56) else { throw .checksumMismatch(path: path, section: "preamble") }
        let version = u32(8)
        guard version == NativeFormat.version else { throw .unsupportedVersion(path: path, version: version) }
        guard u32(12) == 0, u32(60) == 0 else { throw layout("reserved fields are not zero") }

        // Section bounds, with every sum checked against the real file size.
        let headerOffset = u64(16), headerLength = u64(24), dataOffset = u64(32), dataLength = u64(40)
        guard headerOffset == UInt64(NativeFormat.preambleSize) else { throw layout("header offset \(headerOffset) is not 64") }
        guard headerLength <= UInt64(NativeFormat.maxHeaderLength) else { throw layout("header length \(headerLength) exceeds the 16 MiB limit") }
        let headerEnd = headerOffset + headerLength
        guard dataOffset % UInt64(NativeFormat.alignment) == 0, dataOffset >= headerEnd,
              dataOffset - headerEnd < UInt64(NativeFormat.alignment) else {
            throw layout("data offset \(dataOffset) is not the first 64-byte boundary after the header")
        }
        let (fileEnd, overflow) = dataOffset.addingReportingOverflow(dataLength)
        guard !overflow, fileEnd == UInt64(size) else {
            throw layout("sections end at \(overflow ? "overflow" : String(fileEnd)) but the file has \(size) bytes")
        }
        let headerRange = Int(headerOffset)..<Int(headerEnd)
        let dataRange = Int(dataOffset)..<size
        guard bytes[Int(headerEnd)..<Int(dataOffset)].allSatisfy({ $0 == 0 }) else { throw layout("padding before the data is not zero") }
        guard CRC32C.checksum(bytes[headerRange]) == u32(48) else { throw .checksumMismatch(path: path, section: "header") }
        guard CRC32C.checksum(bytes[dataRange]) == u32(52) else { throw .checksumMismatch(path: path, section: "data") }

        guard BoundedJSON.nestingDepth(bytes[headerRange]) <= 32 else {
            throw .badHeader(path: path, detail: "JSON nested deeper than 32 levels")
        }
        let header: HeaderJSON
        do {
            let decoder = JSONDecoder()
            decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            header = try decoder.decode(HeaderJSON.self, from: Data(bytes[headerRange]))
        } catch {
            throw .badHeader(path: path, detail: "not the expected JSON (\(error))")
        }
        guard header.format == "bnkit" else { throw .badHeader(path: path, detail: "format is '\(header.format)', expected 'bnkit'") }
        let arrays = try validateTensors(header.tensors, dataLength: Int(dataLength), dataStart: Int(dataOffset))
        let (graph, state) = try buildGraph(header.graph, arrays: arrays, state: header.state ?? [], table: header.tensors)
        return NativeModel(graph: graph, metadata: header.metadata ?? [:], optimizerState: state)
    }

    /// Checks every tensor's type, shape, size, alignment and bounds, and
    /// that no two overlap; returns their values.
    /// A validated tensor: float32 (in place where it can be) or int64.
    enum Decoded {
        case float32(Tensor)
        case int64(NamedArray)
    }

    private func validateTensors(_ table: [TensorJSON], dataLength: Int, dataStart: Int) throws(NativeFormatError) -> [Decoded] {
        var arrays: [Decoded] = []
        arrays.reserveCapacity(table.count)
        for entry in table {
            func bad(_ detail: String) -> NativeFormatError { .badTensor(path: path, tensor: entry.name, detail: detail) }
            guard let width = ["float32": 4, "int64": 8][entry.dtype] else { throw bad("dtype '\(entry.dtype)' is not supported (float32 and int64 are)") }
            guard entry.shape.count <= 8 else { throw bad("rank \(entry.shape.count) is too large") }
            guard let count = Tensor.elementCount(entry.shape) else { throw bad("shape \(entry.shape) is invalid") }
            let (expected, overflow) = count.multipliedReportingOverflow(by: width)
            guard !overflow, entry.length == expected else { throw bad("length \(entry.length) does not match shape \(entry.shape)") }
            guard entry.offset >= 0, entry.offset % NativeFormat.alignment == 0 else { throw bad("offset \(entry.offset) is not 64-byte aligned") }
            let (end, endOverflow) = entry.offset.addingReportingOverflow(entry.length)
            guard !endOverflow, end <= dataLength else { throw bad("bytes \(entry.offset)..<\(end) lie outside the \(dataLength)-byte data section") }
            let base = dataStart + entry.offset
            if width == 4 {
                let start = bytes.baseAddress.map { $0 + base }
                #if _endian(little)
                let inPlace = start.map { Int(bitPattern: $0) % MemoryLayout<Float>.alignment == 0 } ?? false
                #else
                let inPlace = false
                #endif
                if inPlace, let start {
                    // Little-endian float32 at a 64-byte-aligned offset: the weights as they lie in the file.
                    let view = FloatView(base: start.assumingMemoryBound(to: Float.self), count: count, owner: owner)
                    do { arrays.append(.float32(try Tensor(shape: entry.shape, view: view))) } catch { throw bad("\(error)") }
                } else {
                    let values = (0..<count).map { i in
                        let o = base + 4 * i
                        return Float(bitPattern: UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24)
                    }
                    do { arrays.append(.float32(try Tensor(shape: entry.shape, values: values))) } catch { throw bad("\(error)") }
                }
            } else {
                let values = (0..<count).map { i in
                    (0..<8).reduce(Int64(0)) { $0 | Int64(bytes[base + 8 * i + $1]) << (8 * Int64($1)) }
                }
                do { arrays.append(.int64(try NamedArray(name: entry.name, shape: entry.shape, values: .int64(values)))) } catch { throw bad("\(error)") }
            }
        }
        let sorted = table.indices.sorted { table[$0].offset < table[$1].offset }
        for (a, b) in zip(sorted, sorted.dropFirst()) where table[a].offset + table[a].length > table[b].offset {
            throw .badTensor(path: path, tensor: table[b].name, detail: "overlaps tensor '\(table[a].name)'")
        }
        return arrays
    }

    private func buildGraph(_ json: GraphJSON, arrays: [Decoded], state: [Int], table: [TensorJSON])
        throws(NativeFormatError) -> (Graph, [NamedArray]) {
        var used = [Bool](repeating: false, count: arrays.count)
        var stateArrays: [NamedArray] = []
        for index in state {
            guard arrays.indices.contains(index), !used[index] else {
                throw .badGraph(path: path, detail: "state tensor index \(index) is out of range or used twice")
            }
            used[index] = true
            switch arrays[index] {
            case .float32(let tensor):
                do { stateArrays.append(try NamedArray(name: table[index].name, shape: tensor.shape, values: .float32(tensor.values))) } catch {
                    throw .badGraph(path: path, detail: "state tensor '\(table[index].name)': \(error)")
                }
            case .int64(let array):
                stateArrays.append(array)
            }
        }
        var nodes: [Node] = []
        for node in json.nodes {
            func bad(_ detail: String) -> NativeFormatError { .badGraph(path: path, detail: "layer '\(node.name)': \(detail)") }
            var weights: [WeightRole: Tensor] = [:]
            for (roleName, index) in node.tensors ?? [:] {
                guard let role = WeightRole(rawValue: roleName) else { throw bad("unknown tensor role '\(roleName)'") }
                guard arrays.indices.contains(index) else { throw bad("tensor index \(index) is out of range") }
                guard !used[index] else { throw bad("tensor '\(table[index].name)' is used twice") }
                used[index] = true
                guard case .float32(let tensor) = arrays[index] else {
                    throw bad("tensor '\(table[index].name)' is not float32")
                }
                if let (position, value) = tensor.withUnsafeValues({ values in values.firstIndex { !$0.isFinite }.map { ($0, values[$0]) } }) {
                    throw bad("tensor '\(table[index].name)' holds a non-finite value (\(value)) at index \(position)")
                }
                weights[role] = tensor
            }
            let operation: Op
            let allowed: Set<WeightRole>
            do {
                (operation, allowed) = try OpCodec.decode(node, weights: weights)
            } catch let failure as OpCodec.Failure {
                throw bad(failure.detail)
            } catch {
                throw bad("\(error)")
            }
            if case .batchNorm(let bn) = operation {
                do { _ = try bn.affineCoefficients() } catch { throw bad("\(error)") }
            }
            if let extra = weights.keys.first(where: { !allowed.contains($0) }) {
                throw bad("tensor role '\(extra.rawValue)' does not belong to \(node.op)")
            }
            nodes.append(Node(name: node.name, operation: operation, inputs: node.inputs, sharesWeightsWith: node.shares_weights_with))
        }
        if let orphan = used.firstIndex(of: false) {
            // (every tensor belongs to a layer or to the optimizer state)
            throw .badGraph(path: path, detail: "tensor '\(table[orphan].name)' belongs to no layer")
        }
        do {
            return (try Graph(name: json.name, nodes: nodes, outputs: json.outputs), stateArrays)
        } catch {
            throw .badGraph(path: path, detail: "\(error)")
        }
    }
}
