import Foundation
import IDX
import ModelIR
import XCTest

/// Paths and helpers shared by the test targets.
public enum TestPaths {
    /// The package root (two levels above Tests/TestSupport).
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    public static func fixture(_ name: String) -> String {
        root.appendingPathComponent("Fixtures").appendingPathComponent(name).path
    }

    public static let testImages = fixture("mnist/t10k-images.idx3-ubyte.gz")
    public static let testLabels = fixture("mnist/t10k-labels.idx1-ubyte.gz")

    /// The folder holding the built products (bnconv, bnrun): the test bundle's folder.
    public static var productsFolder: URL {
        let bundle = Bundle.allBundles.first { $0.bundlePath.hasSuffix(".xctest") }
        return (bundle.map { URL(fileURLWithPath: $0.bundlePath) } ?? URL(fileURLWithPath: CommandLine.arguments[0]))
            .deletingLastPathComponent()
    }

}

extension XCTestCase {
    /// A new empty temporary folder, removed when the test ends.
    public func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("bnkit-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}

/// The Keras-made seed fixtures and Keras's own answers for them.
public struct KerasReference {
    public let producer: String
    public let modelPath: String
    /// Keras's outputs for the first images, `outputSize` per image.
    public let outputs: [Float]
    public let outputSize: Int
    /// Keras's predicted class for every test image.
    public let classes: [Int]
    /// Keras's test accuracy.
    public let accuracy: Double

    public static let producers = ["keras2", "keras3"]

    public init(model: String = "seed_mlp", producer: String) throws {
        self.producer = producer
        let base = "\(model)_\(producer)"
        modelPath = TestPaths.fixture("\(base).h5")
        let outputs = try IDXReader.read(path: TestPaths.fixture("\(base).outputs.idx"))
        self.outputs = outputs.floats(0..<outputs.count)
        outputSize = outputs.itemSize
        classes = try IDXReader.read(path: TestPaths.fixture("\(base).classes.idx")).integers() ?? []
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: TestPaths.fixture("\(base).json")))) as? [String: Any]
        accuracy = json?["accuracy"] as? Double ?? .nan
    }
}

/// The result of running a built command-line tool.
public struct ToolRun {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

/// Runs `bnconv` or `bnrun` from the build folder.
public func runTool(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws -> ToolRun {
    let process = Process()
    process.executableURL = TestPaths.productsFolder.appendingPathComponent(name)
    process.arguments = arguments
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read before waiting so a large output cannot fill the pipe and block.
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return ToolRun(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                   stderr: String(decoding: errData, as: UTF8.self))
}

/// The largest absolute difference between two equally long arrays.
public func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

/// A small deterministic generator for test data (SplitMix64).
public struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func floats(_ count: Int, in range: ClosedRange<Float>) -> [Float] {
        (0..<count).map { _ in Float.random(in: range, using: &self) }
    }
}
