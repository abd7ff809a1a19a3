import Foundation
import ModelIR

extension NativeFormat {
    /// Encodes a model (folded or not: BatchNorm layers keep their four
    /// tensors) as a complete file image. The layout is planned first, then the file is
    /// allocated once and every tensor copied straight into its place.
    public static func encode(_ model: NativeModel) throws -> Data {
        /// A tensor's bytes to place: float32 or int64 values, by count.
        enum Payload {
            case float32(Tensor)
            case floats([Float])
            case int64([Int64])
        }
        var tensors: [TensorJSON] = []
        var payloads: [Payload] = []
        var dataSize = 0
        func place(_ name: String, dtype: String, shape: [Int], length: Int, _ payload: Payload) -> Int {
            dataSize += (alignment - dataSize % alignment) % alignment
            tensors.append(TensorJSON(name: name, dtype: dtype, shape: shape, offset: dataSize, length: length))
            payloads.append(payload)
            dataSize += length
            return tensors.count - 1
        }
        var nodes: [NodeJSON] = []
        for node in model.graph.nodes {
            var json = OpCodec.encode(node)
            var refs: [String: Int] = [:]
            for (role, tensor) in node.operation.weights {
                refs[role.rawValue] = place("\(node.name)/\(role.rawValue)", dtype: "float32", shape: tensor.shape,
                                            length: tensor.count * 4, .float32(tensor))
            }
            if !refs.isEmpty { json.tensors = refs }
            nodes.append(json)
        }
        var state: [Int] = []
        for array in model.optimizerState {
            switch array.values {
            case .float32(let values):
                state.append(place(array.name, dtype: "float32", shape: array.shape, length: values.count * 4, .floats(values)))
            case .int64(let values):
                state.append(place(array.name, dtype: "int64", shape: array.shape, length: values.count * 8, .int64(values)))
            }
        }
        let header = HeaderJSON(format: "bnkit", graph: GraphJSON(name: model.graph.name, outputs: model.graph.outputs, nodes: nodes),
                                tensors: tensors, metadata: model.metadata.isEmpty ? nil : model.metadata,
                                state: state.isEmpty ? nil : state)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // pad2d's value may be −∞ (an imported max pooling's padding).
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let headerBytes = try encoder.encode(header)

        let headerOffset = preambleSize
        let dataOffset = (headerOffset + headerBytes.count + alignment - 1) / alignment * alignment
        var file = Data(count: dataOffset + dataSize)
        file.withUnsafeMutableBytes { (bytes: UnsafeMutableRawBufferPointer) in
            let base = bytes.baseAddress!
            headerBytes.withUnsafeBytes { base.advanced(by: headerOffset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            // Tensors, little-endian (a copy of the values on little-endian hosts).
            for (tensor, payload) in zip(tensors, payloads) {
                let target = base.advanced(by: dataOffset + tensor.offset)
                func put<T: FixedWidthInteger>(_ values: UnsafeBufferPointer<T>) {
                    if T(1).littleEndian == T(1) {
                        target.copyMemory(from: values.baseAddress!, byteCount: values.count * MemoryLayout<T>.size)
                    } else {
                        for (i, v) in values.enumerated() { target.storeBytes(of: v.littleEndian, toByteOffset: i * MemoryLayout<T>.size, as: T.self) }
                    }
                }
                guard tensor.length > 0 else { continue }
                switch payload {
                case .float32(let t): t.withUnsafeValues { v in v.withMemoryRebound(to: UInt32.self) { put($0) } }
                case .floats(let f): f.withUnsafeBufferPointer { v in v.withMemoryRebound(to: UInt32.self) { put($0) } }
                case .int64(let i): i.withUnsafeBufferPointer { put($0) }
                }
            }
            func store<T: FixedWidthInteger>(_ value: T, at offset: Int) {
                base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
            }
            for (i, byte) in magic.enumerated() { store(byte, at: i) }
            var offset = magic.count
            func append<T: FixedWidthInteger>(_ value: T) { store(value, at: offset); offset += MemoryLayout<T>.size }
            append(version)
            append(UInt32(0))
            append(UInt64(headerOffset))
            append(UInt64(headerBytes.count))
            append(UInt64(dataOffset))
            append(UInt64(dataSize))
            append(CRC32C.checksum(UnsafeRawBufferPointer(start: base.advanced(by: headerOffset), count: headerBytes.count)))
            append(CRC32C.checksum(UnsafeRawBufferPointer(start: base.advanced(by: dataOffset), count: dataSize)))
            append(CRC32C.checksum(UnsafeRawBufferPointer(start: base, count: offset)))
            append(UInt32(0))
        }
        return file
    }
}
