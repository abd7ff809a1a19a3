import BoundedJSON
import Foundation
import ModelIR

extension NativeFormat {
    /// Reads and fully validates a native model file.
    public static func read(path: String) throws(NativeFormatError) -> NativeModel {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw .unreadable(path: path, detail: FileManager.default.fileExists(atPath: path) ? "permission denied or not a regular file" : "no such file")
        }
        return try decode(data, path: path)
    }

    /// Decodes a file image; `path` is used in errors only. Every count,
    /// offset, size and checksum is checked before use.
    public static func decode(_ data: Data, path: String = "<memory>") throws(NativeFormatError) -> NativeModel {
        let bytes = data.withUnsafeBytes { [UInt8]($0) }
        return try Decoder(bytes: bytes, path: path).decode()
    }
}

private struct Decoder {
    let bytes: [UInt8]
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
            if size < NativeFormat.magic.count && bytes == Array(NativeFormat.magic.prefix(size)) {
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
            header = try JSONDecoder().decode(HeaderJSON.self, from: Data(bytes[headerRange]))
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
    private func validateTensors(_ table: [TensorJSON], dataLength: Int, dataStart: Int) throws(NativeFormatError) -> [NamedArray] {
        var arrays: [NamedArray] = []
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
            let values: NamedArray.Values
            if width == 4 {
                values = .float32((0..<count).map { i in
                    let o = base + 4 * i
                    return Float(bitPattern: UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24)
                })
            } else {
                values = .int64((0..<count).map { i in
                    (0..<8).reduce(Int64(0)) { $0 | Int64(bytes[base + 8 * i + $1]) << (8 * Int64($1)) }
                })
            }
            do { arrays.append(try NamedArray(name: entry.name, shape: entry.shape, values: values)) } catch { throw bad("\(error)") }
        }
        let sorted = table.indices.sorted { table[$0].offset < table[$1].offset }
        for (a, b) in zip(sorted, sorted.dropFirst()) where table[a].offset + table[a].length > table[b].offset {
            throw .badTensor(path: path, tensor: table[b].name, detail: "overlaps tensor '\(table[a].name)'")
        }
        return arrays
    }

    private func buildGraph(_ json: GraphJSON, arrays: [NamedArray], state: [Int], table: [TensorJSON])
        throws(NativeFormatError) -> (Graph, [NamedArray]) {
        var used = [Bool](repeating: false, count: arrays.count)
        var stateArrays: [NamedArray] = []
        for index in state {
            guard arrays.indices.contains(index), !used[index] else {
                throw .badGraph(path: path, detail: "state tensor index \(index) is out of range or used twice")
            }
            used[index] = true
            stateArrays.append(arrays[index])
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
                guard case .float32(let values) = arrays[index].values,
                      let tensor = try? Tensor(shape: arrays[index].shape, values: values) else {
                    throw bad("tensor '\(table[index].name)' is not float32")
                }
                if let position = values.firstIndex(where: { !$0.isFinite }) {
                    throw bad("tensor '\(table[index].name)' holds a non-finite value (\(values[position])) at index \(position)")
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
