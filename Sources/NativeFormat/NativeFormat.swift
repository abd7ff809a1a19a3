// The bnkit native model format, version 1 (specified in docs/FORMAT.md).
//
//   offset size  field (all integers little-endian)
//   0      8     magic 89 42 4E 4B 0D 0A 1A 0A  ("\x89BNK\r\n\x1a\n")
//   8      4     version (1)
//   12     4     flags (0; reserved)
//   16     8     header offset (64)
//   24     8     header length (bytes of UTF-8 JSON, at most 16 MiB)
//   32     8     data offset (a multiple of 64, >= header offset + header length)
//   40     8     data length
//   48     4     CRC-32C of the header bytes
//   52     4     CRC-32C of the data bytes
//   56     4     CRC-32C of bytes 0..<56
//   60     4     reserved (0)
//   64     ...   header JSON, then zero padding up to the data offset, then data.
//
// The file ends exactly at data offset + data length. Every tensor starts at
// a multiple of 64 from the data offset (so at a 64-byte aligned file offset),
// and tensors do not overlap. A reader checks all of this before using a byte.

import Foundation
import ModelIR

/// Every way a native model file can be wrong; each names the file.
public enum NativeFormatError: Error, CustomStringConvertible, Equatable, Sendable {
    case unreadable(path: String, detail: String)
    case tooShort(path: String, size: Int)
    case badMagic(path: String)
    case unsupportedVersion(path: String, version: UInt32)
    case badLayout(path: String, detail: String)
    case checksumMismatch(path: String, section: String)
    case badHeader(path: String, detail: String)
    case badTensor(path: String, tensor: String, detail: String)
    case badGraph(path: String, detail: String)

    public var description: String {
        switch self {
        case let .unreadable(path, detail): "\(path): cannot read the file: \(detail)"
        case let .tooShort(path, size): "\(path): \(size) bytes is too short for a bnkit model (truncated?)"
        case let .badMagic(path): "\(path): not a bnkit model file (wrong magic bytes)"
        case let .unsupportedVersion(path, version): "\(path): format version \(version) is not supported (this bnkit reads version 1)"
        case let .badLayout(path, detail): "\(path): corrupted or truncated file: \(detail)"
        case let .checksumMismatch(path, section): "\(path): corrupted file: the \(section) checksum does not match"
        case let .badHeader(path, detail): "\(path): invalid header: \(detail)"
        case let .badTensor(path, tensor, detail): "\(path): tensor '\(tensor)': \(detail)"
        case let .badGraph(path, detail): "\(path): invalid model: \(detail)"
        }
    }
}

/// A model stored in the native format, with its free-form metadata.
public struct NativeModel: Sendable {
    public var graph: Graph
    /// Free-form string metadata (producer, source file digest, creation time, ...).
    public var metadata: [String: String]
    /// Optimizer state (or any training-time arrays), carried but not used at inference.
    public var optimizerState: [NamedArray]

    public init(graph: Graph, metadata: [String: String] = [:], optimizerState: [NamedArray] = []) {
        self.graph = graph
        self.metadata = metadata
        self.optimizerState = optimizerState
    }
}

public enum NativeFormat {
    public static let magic: [UInt8] = [0x89, 0x42, 0x4E, 0x4B, 0x0D, 0x0A, 0x1A, 0x0A]
    public static let version: UInt32 = 1
    static let preambleSize = 64
    static let alignment = 64
    static let maxHeaderLength = 16 << 20

    /// Whether `data` starts with the native format's magic bytes.
    public static func hasMagic(_ data: Data) -> Bool {
        data.count >= magic.count && Array(data.prefix(magic.count)) == magic
    }
}

// MARK: - Header (JSON)

struct HeaderJSON: Codable {
    var format: String
    var graph: GraphJSON
    var tensors: [TensorJSON]
    var metadata: [String: String]?
    /// Indices into `tensors` of the optimizer state, in order.
    var state: [Int]?
}

struct GraphJSON: Codable {
    var name: String
    var outputs: [String]
    var nodes: [NodeJSON]
}

struct NodeJSON: Codable {
    var name: String
    var op: String
    var inputs: [String]
    /// Role (`kernel`, `gamma`, ...) to index into the tensor table.
    var tensors: [String: Int]?
    var shares_weights_with: String?
    var shape: [Int]?
    var epsilon: Double?
    var activation: ActivationJSON?
    var size: [Int]?
    var strides: [Int]?
    var dilation: [Int]?
    var padding: String?
    var groups: Int?
    var keep_dims: Bool?
    var pads: [Int]?
    var axis: Int?
    /// layer_norm: the normalized axes.
    var axes: [Int]?
    /// upsampling: nearest or bilinear.
    var interpolation: String?
    /// pad2d: the padding value (−∞ is written as -inf by the encoder below).
    var value: Float?
}

/// An activation and its parameters.
struct ActivationJSON: Codable {
    var name: String
    var alpha: Float?
    var slope: Float?
    var max_value: Float?
    var threshold: Float?
}

struct TensorJSON: Codable {
    var name: String
    var dtype: String
    var shape: [Int]
    /// Byte offset from the start of the data section.
    var offset: Int
    /// Byte length.
    var length: Int
}
