import AtomicFile
import BNKit
import Foundation
import HDF5
import IDX
import Images
import KerasHDF5
import ModelIR
import NativeFormat
import NumPy
import ONNXFormat
import Runtime

/// Exit codes of bnconv and bnrun (documented in the README).
public enum ExitStatus: Int32, Sendable {
    case success = 0
    /// `bnconv verify`: the folded model differs from the unfolded one beyond the tolerance.
    case toleranceExceeded = 1
    /// The command line is wrong (swift-argument-parser's validation code).
    case usage = 64
    /// An input file is missing, unreadable, malformed or unsupported.
    case badInput = 65
    /// bnkit itself failed.
    case internalError = 70
    /// An output file could not be written.
    case outputError = 74
}

/// A failure reported to the user as one line and an exit status.
public enum CLIFailure: Error, CustomStringConvertible {
    case badInput(String)
    case output(String)
    case internalError(String)

    public var description: String {
        switch self {
        case .badInput(let text), .output(let text), .internalError(let text): text
        }
    }

    public var status: ExitStatus {
        switch self {
        case .badInput: .badInput
        case .output: .outputError
        case .internalError: .internalError
        }
    }

    /// Classifies any error thrown by the libraries.
    public static func from(_ error: any Error) -> CLIFailure {
        switch error {
        case let failure as CLIFailure: failure
        case let error as BNKitError:
            if case .cannotSave = error { .output("\(error)") } else { .badInput("\(error)") }
        case let error as KerasFileError: .badInput("\(error)")
        case let error as NativeFormatError: .badInput("\(error)")
        case let error as ONNXReadError: .badInput("\(error)")
        case let error as ONNXWriteError: .badInput("\(error)")
        case let error as IDXError: .badInput("\(error)")
        case let error as NPYError: .badInput("\(error)")
        case let error as ImageError: .badInput("\(error)")
        case let error as HDF5Error: .badInput("\(error)")
        case let error as ModelError: .badInput("invalid model: \(error)")
        case let error as RuntimeError: .badInput("\(error)")
        case let error as AtomicFile.WriteError: .output("\(error)")
        default: .internalError("internal error: \(error)")
        }
    }
}

/// Runs a command body: on failure prints `tool: error: message` on stderr
/// and exits with the failure's status.
public func runReportingFailures(tool: String, _ body: () throws -> Void) -> Never {
    do {
        try body()
        exit(ExitStatus.success.rawValue)
    } catch {
        let failure = CLIFailure.from(error)
        FileHandle.standardError.write(Data("\(tool): error: \(oneLine(failure.description))\n".utf8))
        exit(failure.status.rawValue)
    }
}

/// `text` as one printable line: messages quote what a file holds (a header, a layer's name, a
/// path), and a crafted file must not be able to break a message over lines or send the
/// terminal control sequences. Control characters (C0, DEL, C1) and the Unicode line and
/// paragraph separators are escaped: `\n`, `\r`, `\t`, else `\u{…}`.
public func oneLine(_ text: String) -> String {
    var out = ""
    out.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar == "\u{2028}" || scalar == "\u{2029}":
            out += "\\u{\(String(scalar.value, radix: 16))}"
        default:
            out.unicodeScalars.append(scalar)
        }
    }
    return out
}
