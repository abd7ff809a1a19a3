import ArgumentParser
import AtomicFile
import BNFolding
import BNKit
import BNKitCLI
import Foundation
import NativeFormat
import ScratchFiles

@main
struct BNConv: ParsableCommand {
    static func main() {
        isolateHDF5Parsing()
        // Interrupted (SIGINT, SIGTERM, SIGHUP), the tool leaves no scratch file behind: no
        // half-written output's temporary, no extracted archive member, no HDF5 reader.
        ScratchFiles.removeOnInterruption()
        main(nil)
    }

    static let configuration = CommandConfiguration(
        commandName: "bnconv",
        abstract: "Convert and fold BatchNormalization models.",
        discussion: """
        Exit status: 0 success, 1 verify: difference beyond the tolerance, 64 usage error, 65 bad or unsupported input, 74 cannot write output, \
        70 internal error.
        """,
        subcommands: [Fold.self, Convert.self, Inspect.self, Verify.self, Recalibrate.self])
}

struct Fold: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fold every BatchNormalization layer into a neighbouring layer and write a bnkit .bin.",
        discussion: """
        A BatchNormalization that follows a Dense, Conv2D or DepthwiseConv2D with a linear activation \
        (and is that layer's only reader) is multiplied into its kernel and bias; one that precedes a \
        Dense or a Conv2D that pads nothing is multiplied into that layer. Coefficients are computed in \
        Double and stored as Float. Any other BatchNormalization becomes a per-channel scale and shift, \
        and bnconv prints why. The output is written to a temporary file and renamed, so an existing OUT \
        is replaced only by a complete file.

        Examples:
          bnconv fold model.h5 -o model.bin
        """)

    @Argument(help: "The model to fold: a Keras .h5, a Keras 3 .keras archive or a bnkit .bin.")
    var input: String

    @Option(name: [.short, .customLong("output")], help: "The .bin file to write.")
    var output: String

    @Option(help: "Record the image preprocessing the model expects (none, tf, torch, caffe: keras.applications preprocess_input modes); bnrun applies it to image inputs.")
    var preprocess: String?

    func validate() throws {
        if let preprocess, !["none", "tf", "torch", "caffe"].contains(preprocess) {
            throw ValidationError("unknown --preprocess '\(preprocess)' (none, tf, torch, caffe)")
        }
    }

    func run() throws {
        runReportingFailures(tool: "bnconv") {
            let (graph, format) = try loadModel(path: input)
            let result = try BNFolder.fold(graph)
            var metadata = outputMetadata(producer: "bnconv fold", source: input)
            metadata["source_format"] = format.rawValue
            metadata["folded"] = "true"
            if let preprocess { metadata["preprocess"] = preprocess }
            let data = try NativeFormat.encode(NativeModel(graph: result.graph, metadata: metadata))
            try AtomicFile.write(data, to: output)
            if result.events.isEmpty { print("no BatchNormalization layers in \(input)") }
            for event in result.events { print(event) }
            print("wrote \(output) (\(result.graph.nodes.count) layers, \(data.count) bytes)")
        }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model's layers, shapes, parameters, BatchNormalization statistics and fold plan.",
        discussion: """
        MODEL is a Keras .h5, a Keras 3 .keras archive or a bnkit .bin (recognised by content). For a .bin, \
        the format version is shown and every checksum is verified.

        Examples:
          bnconv inspect model.h5
          bnconv inspect model.bin
        """)

    @Argument(help: "The model file.")
    var model: String

    func run() throws {
        runReportingFailures(tool: "bnconv") {
            print(try inspectModel(path: model), terminator: "")
        }
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the unfolded and the folded model side by side and compare them.",
        discussion: """
        Reports the max absolute and relative difference of the outputs, how many predicted classes agree \
        and, with labels, both accuracies. Without IMAGES, 512 generated inputs (uniform in [0, 1]) are used. \
        Exits with status 1 when the max absolute difference exceeds the tolerance (default 1e-5).

        Examples:
          bnconv verify model.h5 t10k-images.idx3-ubyte.gz --labels t10k-labels.idx1-ubyte.gz
          bnconv verify model.keras
        """)

    @Argument(help: "The unfolded model: a Keras .h5, a .keras archive or a bnkit .bin.")
    var model: String

    @Argument(help: "An IDX file of images (plain or gzipped).")
    var images: String?

    @Option(help: "An IDX file of labels, one per image.")
    var labels: String?

    @Option(help: "Input scale, as a number or a fraction such as 1/255. Default: 1/255 for integer IDX data, 1 for float data.")
    var scale: String?

    @Option(help: "The largest acceptable max absolute difference.")
    var tolerance: Float = defaultFoldTolerance

    func validate() throws {
        if let scale, InputScale(scale) == nil { throw ValidationError("invalid --scale '\(scale)'") }
        if labels != nil && images == nil { throw ValidationError("--labels needs IMAGES") }
    }

    func run() throws {
        runReportingFailures(tool: "bnconv") {
            let (graph, _) = try loadModel(path: model)
            let (report, folded) = try verifyFold(graph: graph, imagesPath: images, labelsPath: labels,
                                                  scale: scale.flatMap(InputScale.init), tolerance: tolerance)
            for event in folded.events { print(event) }
            print(report.text, terminator: "")
            if !report.passed { Foundation.exit(ExitStatus.toleranceExceeded.rawValue) }
        }
    }
}

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a model between formats, unfolded (BatchNormalization layers kept with their statistics).",
        discussion: """
        IN is a Keras .h5, a Keras 3 .keras archive or a bnkit .bin (recognised by content). OUT is written as a \
        bnkit .bin, a Keras .h5 or ONNX, chosen by --to or by OUT's extension. A model read from .h5 is written back \
        as it came: its model_config, weight names, training_config and optimizer state are kept (a .bin \
        carries them too). ONNX is opset 17 with the input in Keras's layout (N, height, width, channels; the \
        batch dimension dynamic) so the same arrays feed it; BatchNormalization layers are written as \
        BatchNormalization nodes, or folded first with --fold. The output is written to a temporary file and renamed.

        Examples:
          bnconv convert model.h5 model.bin
          bnconv convert model.bin model.h5
          bnconv convert model.keras model.h5
          bnconv convert model.h5 model.onnx --fold
        """)

    @Argument(help: "The model to convert.")
    var input: String

    @Argument(help: "The file to write.")
    var output: String

    @Option(help: "Output format: bin, h5 or onnx (default: from OUT's extension).")
    var to: String?

    @Flag(help: "Fold the BatchNormalization layers first (as `bnconv fold`, whose report is printed).")
    var fold = false

    func validate() throws {
        if let to, !["bin", "h5", "onnx"].contains(to) { throw ValidationError("unknown format '\(to)' (bin, h5, onnx)") }
        if to == nil && ModelFormat.forSaving(path: output) == nil {
            throw ValidationError("cannot tell the output format from '\(output)': use a .bin, .h5 or .onnx extension, or --to")
        }
    }

    func run() throws {
        runReportingFailures(tool: "bnconv") {
            var model = try Model.load(path: input)
            if fold {
                let result = try BNFolder.fold(model.graph)
                for event in result.events { print(event.description) }
                model = Model(graph: result.graph, metadata: model.metadata)
                model.metadata["folded"] = "true"
            }
            model.metadata.merge(outputMetadata(producer: "bnconv convert", source: input)) { _, new in new }
            let format: ModelFormat? = to.map { ["bin": .native, "h5": .kerasHDF5, "onnx": .onnx][$0]! }
            let notices = try model.save(to: output, format: format)
            for notice in notices { print("note: \(notice)") }
            print("wrote \(output) (\((format ?? ModelFormat.forSaving(path: output))!.rawValue), \(model.graph.nodes.count) layers)")
        }
    }
}

struct Recalibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-estimate every BatchNormalization layer's moving mean and variance from unlabeled images.",
        discussion: """
        For every BatchNormalization layer: the mean and population variance (divided by the count, as Keras's \
        training-mode BN) of its input over all the images, per neuron for Dense outputs and per channel over \
        images x height x width for conv outputs, accumulated in Double while the images stream from the file. \
        Layers are recalibrated in order, in inference mode: each layer's input is computed with the layers \
        before it already using their new statistics. Gamma, beta, epsilon and every other weight stay as they \
        are. OUT is written unfolded, as .h5 (opens in Keras) or .bin, by extension; fold it afterwards with \
        `bnconv fold`. Use it to adapt a model to shifted inputs (AdaBN: recalibrate on unlabeled images of the \
        new domain) or to replace stale running averages ("precise BN").

        Examples:
          bnconv recalibrate model.h5 --images shifted-train.idx -o adapted.h5
          bnconv recalibrate model.h5 --images train.idx.gz --labels train-labels.idx.gz --limit 10000 -o model-precise.bin
        """)

    @Argument(help: "The unfolded model: a Keras .h5, a Keras 3 .keras archive or a bnkit .bin with BatchNormalization layers.")
    var model: String

    @Option(help: "An IDX file of images (plain or gzipped) to compute the statistics from.")
    var images: String

    @Option(name: [.short, .customLong("output")], help: "The model to write: .h5 or .bin.")
    var output: String

    @Option(help: "An IDX file of labels, one per image: the accuracy on the images is reported before and after.")
    var labels: String?

    @Option(help: "Input scale, as a number or a fraction such as 1/255. Default: 1/255 for integer IDX data, 1 for float data.")
    var scale: String?

    @Option(help: "Use only the first N images.")
    var limit: Int?

    @Option(help: "Images run through the model at once.")
    var batch: Int = 1024

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    func validate() throws {
        if let scale, InputScale(scale) == nil { throw ValidationError("invalid --scale '\(scale)' (a number or a fraction such as 1/255)") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        if ModelFormat.forSaving(path: output) == nil {
            throw ValidationError("cannot tell the output format from '\(output)': use a .h5 or .bin extension")
        }
    }

    func run() throws {
        runReportingFailures(tool: "bnconv") {
            let report = try recalibrateModel(modelPath: model, imagesPath: images, outputPath: output, labelsPath: labels,
                                              scale: scale.flatMap(InputScale.init), limit: limit, batch: batch, threads: threads)
            print(report, terminator: "")
        }
    }
}
