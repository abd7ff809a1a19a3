import ArgumentParser
import AtomicFile
import BNFolding
import BNKitCLI
import Foundation
import NativeFormat

@main
struct BNConv: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bnconv",
        abstract: "Convert and fold BatchNormalization models.",
        discussion: """
        Exit status: 0 success, 64 usage error, 65 bad or unsupported input, 74 cannot write output,
        70 internal error.
        """,
        subcommands: [Fold.self])
}

struct Fold: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fold every BatchNormalization layer into the layer before it and write a bnkit .bin.",
        discussion: """
        A BatchNormalization that follows a Dense layer with a linear activation (and is that layer's
        only reader) is multiplied into its kernel and bias, computed in Double and stored as Float.
        Any other BatchNormalization becomes a per-channel scale and shift. The output is written to a
        temporary file and renamed, so an existing OUT is replaced only by a complete file.

        Examples:
          bnconv fold model.h5 -o model.bin
        """)

    @Argument(help: "The model to fold: a Keras .h5 or a bnkit .bin.")
    var input: String

    @Option(name: [.short, .customLong("output")], help: "The .bin file to write.")
    var output: String

    func run() throws {
        runReportingFailures(tool: "bnconv") {
            let (graph, format) = try loadModel(path: input)
            let result = try BNFolder.fold(graph)
            let metadata = [
                "producer": "bnconv fold",
                "source": URL(fileURLWithPath: input).lastPathComponent,
                "source_format": format.rawValue,
                "folded": "true",
            ]
            let data = try NativeFormat.encode(NativeModel(graph: result.graph, metadata: metadata))
            try AtomicFile.write(data, to: output)
            if result.events.isEmpty { print("no BatchNormalization layers in \(input)") }
            for event in result.events { print(event) }
            print("wrote \(output) (\(result.graph.nodes.count) layers, \(data.count) bytes)")
        }
    }
}
