import Foundation
import ModelIR

extension NativeFormat {
    /// Encodes a model (folded or not: BatchNorm layers keep their four
    /// tensors) as a complete file image.
    public static func encode(_ model: NativeModel) throws -> Data {
        var tensors: [TensorJSON] = []
        var data = Data()
        var nodes: [NodeJSON] = []
        for node in model.graph.nodes {
            var json = OpCodec.encode(node)
            var refs: [String: Int] = [:]
            for (role, tensor) in node.operation.weights {
                let padding = (alignment - data.count % alignment) % alignment
                data.append(Data(count: padding))
                tensors.append(TensorJSON(name: "\(node.name)/\(role.rawValue)", dtype: "float32", shape: tensor.shape,
                                          offset: data.count, length: tensor.count * 4))
                var littleEndian = tensor.values.map { $0.bitPattern.littleEndian }
                data.append(Data(bytes: &littleEndian, count: littleEndian.count * 4))
                refs[role.rawValue] = tensors.count - 1
            }
            if !refs.isEmpty { json.tensors = refs }
            nodes.append(json)
        }
        var state: [Int] = []
        for array in model.optimizerState {
            data.append(Data(count: (alignment - data.count % alignment) % alignment))
            switch array.values {
            case .float32(let values):
                tensors.append(TensorJSON(name: array.name, dtype: "float32", shape: array.shape, offset: data.count, length: values.count * 4))
                var littleEndian = values.map { $0.bitPattern.littleEndian }
                data.append(Data(bytes: &littleEndian, count: littleEndian.count * 4))
            case .int64(let values):
                tensors.append(TensorJSON(name: array.name, dtype: "int64", shape: array.shape, offset: data.count, length: values.count * 8))
                var littleEndian = values.map { $0.littleEndian }
                data.append(Data(bytes: &littleEndian, count: littleEndian.count * 8))
            }
            state.append(tensors.count - 1)
        }
        let header = HeaderJSON(format: "bnkit", graph: GraphJSON(name: model.graph.name, outputs: model.graph.outputs, nodes: nodes),
                                tensors: tensors, metadata: model.metadata.isEmpty ? nil : model.metadata,
                                state: state.isEmpty ? nil : state)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let headerBytes = try encoder.encode(header)

        let headerOffset = preambleSize
        let dataOffset = (headerOffset + headerBytes.count + alignment - 1) / alignment * alignment
        var file = Data()
        file.append(contentsOf: magic)
        appendLE(&file, version)
        appendLE(&file, UInt32(0))
        appendLE(&file, UInt64(headerOffset))
        appendLE(&file, UInt64(headerBytes.count))
        appendLE(&file, UInt64(dataOffset))
        appendLE(&file, UInt64(data.count))
        appendLE(&file, CRC32C.checksum(headerBytes))
        appendLE(&file, CRC32C.checksum(data))
        appendLE(&file, CRC32C.checksum(file))
        appendLE(&file, UInt32(0))
        file.append(headerBytes)
        file.append(Data(count: dataOffset - file.count))
        file.append(data)
        return file
    }

    private static func appendLE<T: FixedWidthInteger>(_ data: inout Data, _ value: T) {
        withUnsafeBytes(of: value.littleEndian) { data.append(contentsOf: $0) }
    }
}
