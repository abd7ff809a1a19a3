import Foundation
import IDX
import Images
import NumPy

/// Samples a model runs on, read in order a tile at a time: IDX and NumPy arrays, or
/// image files. Memory stays at one tile whatever the number of samples.
public protocol SampleSource: AnyObject {
    /// What to call the input in messages.
    var name: String { get }
    /// Samples listed (images that turn out damaged may be skipped with --skip-bad).
    var itemCount: Int { get }
    /// Values per sample.
    var itemSize: Int { get }
    /// Integer data (pixels): scaled by 1/255 by default.
    var isInteger: Bool { get }
    /// Rows are keyed by a file path (images) rather than an index.
    var keyed: Bool { get }
    /// Reads the next up to `count` samples into `values` (replacing what it held; empty
    /// after the last) and returns their keys when `keyed`.
    func next(_ count: Int, into values: inout [Float], multiplier: Float, divisor: Float) throws -> [String]
    /// Files skipped so far, with the reason (images with --skip-bad).
    var skipped: [(path: String, reason: String)] { get }
}

/// How image files become model inputs.
public struct ImageOptions: Sendable {
    public var resize: ResizeMethod = .nearest
    public var preprocessing: Preprocessing = .none
    public var skipBad = false
    /// Images decoded and resized at once (one a thread).
    public var threads = 1
    public init(resize: ResizeMethod = .nearest, preprocessing: Preprocessing = .none, skipBad: Bool = false, threads: Int = 1) {
        self.resize = resize
        self.preprocessing = preprocessing
        self.skipBad = skipBad
        self.threads = max(1, threads)
    }
}

/// IDX files (plain or gzipped), streamed.
final class IDXSource: SampleSource {
    let stream: IDXStream
    init(_ stream: IDXStream) { self.stream = stream }
    var name: String { stream.path }
    var itemCount: Int { stream.itemCount }
    var itemSize: Int { stream.itemSize }
    var isInteger: Bool { stream.dataType.isInteger }
    var keyed: Bool { false }
    var skipped: [(path: String, reason: String)] { [] }
    func next(_ count: Int, into values: inout [Float], multiplier: Float, divisor: Float) throws -> [String] {
        try stream.next(count, into: &values, multiplier: multiplier, divisor: divisor)
        return []
    }
}

/// A `.npy` file or an array of an `.npz`, memory-mapped.
final class NPYSource: SampleSource {
    let file: NPYFile
    private var position = 0
    init(_ file: NPYFile) { self.file = file }
    var name: String { file.path }
    var itemCount: Int { file.itemCount }
    var itemSize: Int { file.itemSize }
    var isInteger: Bool { file.header.type.isInteger }
    var keyed: Bool { false }
    var skipped: [(path: String, reason: String)] { [] }
    func next(_ count: Int, into values: inout [Float], multiplier: Float, divisor: Float) throws -> [String] {
        let items = max(0, min(count, itemCount - position))
        if values.count != items * itemSize { values = [Float](repeating: 0, count: items * itemSize) }
        values.withUnsafeMutableBufferPointer { out in
            file.floats(items: position..<(position + items), into: out, multiplier: multiplier, divisor: divisor)
        }
        position += items
        return []
    }
}

/// PNG and JPEG files decoded, converted to the model's channels, resized to its input
/// and preprocessed as Keras's `load_img` + `img_to_array` + `preprocess_input` do.
final class ImageSource: SampleSource {
    let paths: [String]
    let height: Int, width: Int, channels: Int
    let options: ImageOptions
    private var position = 0
    private(set) var skipped: [(path: String, reason: String)] = []
    /// One decoder a thread, kept from batch to batch with its memory.
    private lazy var decoders = (0..<max(1, options.threads)).map { _ in ImageDecoder() }

    init(paths: [String], inputShape: [Int], options: ImageOptions, name: String) throws {
        guard inputShape.count == 3, [1, 3].contains(inputShape[2]) else {
            throw CLIFailure.badInput("\(name): images need a model whose input is (height, width, 1 or 3 channels); this model takes \(inputShape)")
        }
        self.paths = paths
        (height, width, channels) = (inputShape[0], inputShape[1], inputShape[2])
        self.options = options
        self.name = name
    }

    let name: String
    var itemCount: Int { paths.count }
    var itemSize: Int { height * width * channels }
    var isInteger: Bool { false }
    var keyed: Bool { true }

    /// The images of `paths[range]` decoded and resized, in order, on up to `options.threads`
    /// threads (each takes the next image as it comes free).
    private func load(_ range: Range<Int>) -> [Result<Image8, ImageError>] {
        let load = ParallelImageLoad(paths: Array(paths[range]), channels: channels, width: width, height: height, resize: options.resize,
                                     decoders: decoders)
        DispatchQueue.concurrentPerform(iterations: min(decoders.count, range.count)) { load.work(thread: $0) }
        return load.results()
    }

    func next(_ count: Int, into values: inout [Float], multiplier: Float, divisor: Float) throws -> [String] {
        var keys: [String] = []
        var images: [Image8] = []
        while keys.count < count, position < paths.count {
            let range = position..<min(paths.count, position + count - keys.count)
            position = range.upperBound
            for (path, result) in zip(paths[range], load(range)) {
                switch result {
                case .success(let image):
                    images.append(image)
                    keys.append(path)
                case .failure(let error):
                    guard options.skipBad else { throw CLIFailure.badInput(error.description) }
                    skipped.append((path, error.detail))
                }
            }
        }
        values = [Float](repeating: 0, count: images.count * itemSize)
        values.withUnsafeMutableBufferPointer { out in
            for (i, image) in images.enumerated() {
                let target = UnsafeMutableBufferPointer(rebasing: out[(i * itemSize)..<((i + 1) * itemSize)])
                options.preprocessing.apply(image.pixels, channels: channels, into: target)
                // --scale (with no preprocessing): `x * multiplier / divisor`, e.g. 1/255 for
                // models trained on img_to_array(img) / 255.
                if multiplier != 1 || divisor != 1 { for j in target.indices { target[j] = target[j] * multiplier / divisor } }
            }
        }
        return keys
    }
}

/// One batch of images decoded and resized by several threads, each with its own decoder:
/// each claims the next image under a lock and writes its own result's slot.
private final class ParallelImageLoad: @unchecked Sendable {
    private let paths: [String]
    private let channels: Int, width: Int, height: Int
    private let resize: ResizeMethod
    private let decoders: [ImageDecoder]
    private let slots: UnsafeMutableBufferPointer<Result<Image8, ImageError>?>
    private let lock = NSLock()
    private var claimed = 0

    init(paths: [String], channels: Int, width: Int, height: Int, resize: ResizeMethod, decoders: [ImageDecoder]) {
        (self.paths, self.channels, self.width, self.height, self.resize) = (paths, channels, width, height, resize)
        self.decoders = decoders
        slots = .allocate(capacity: paths.count)
        slots.initialize(repeating: nil)
    }

    deinit { slots.deinitialize().deallocate() }

    /// Thread `thread`'s share (its own decoder); threads run this at once.
    func work(thread: Int) {
        let decoder = decoders[thread]
        while case let index = lock.withLock({ defer { claimed += 1 }; return claimed }), index < paths.count {
            do {
                slots[index] = .success(try decoder.load(path: paths[index], channels: channels, width: width, height: height, method: resize))
            } catch let error as ImageError {
                slots[index] = .failure(error)
            } catch {
                slots[index] = .failure(ImageError(path: paths[index], detail: "\(error)"))
            }
        }
    }

    /// Every image's result, in order (after `work` has returned on every thread).
    func results() -> [Result<Image8, ImageError>] { slots.map { $0! } }
}

/// Opens what the user named as input: an IDX file, a `.npy`, an `.npz` (`array` picks
/// the array), image files, a folder of images, or a text file listing image paths
/// (one per line, relative to the list's folder; blank lines and `#` comments skipped).
/// The format is recognised by content.
public func openSamples(_ paths: [String], inputSize: Int, inputShape: [Int], array: String?, images options: ImageOptions) throws -> SampleSource {
    func isImage(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path), let head = try? handle.read(upToCount: 8) else { return false }
        try? handle.close()
        let bytes = [UInt8](head)
        return bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) || bytes.starts(with: [0xFF, 0xD8, 0xFF])
    }
    func imageFiles(in folder: String) throws -> [String] {
        let names = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        return names.filter { ["png", "jpg", "jpeg"].contains(URL(fileURLWithPath: $0).pathExtension.lowercased()) }
            .map { folder + "/" + $0 }
    }
    var isDirectory: ObjCBool = false
    if paths.count > 1 || (FileManager.default.fileExists(atPath: paths[0], isDirectory: &isDirectory) && isDirectory.boolValue) {
        var files: [String] = []
        for path in paths {
            var folder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &folder) else { throw CLIFailure.badInput("\(path): no such file") }
            files += folder.boolValue ? try imageFiles(in: path) : [path]
        }
        guard !files.isEmpty else { throw CLIFailure.badInput("\(paths.joined(separator: ", ")): no .png, .jpg or .jpeg files") }
        return try ImageSource(paths: files, inputShape: inputShape, options: options, name: paths.joined(separator: ", "))
    }
    let path = paths[0]
    guard FileManager.default.fileExists(atPath: path) else { throw CLIFailure.badInput("\(path): no such file") }
    guard let handle = FileHandle(forReadingAtPath: path) else { throw CLIFailure.badInput("\(path): cannot be read") }
    let head = [UInt8]((try? handle.read(upToCount: 8)) ?? Data())
    try? handle.close()
    let source: SampleSource
    if head.starts(with: [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]) {
        source = NPYSource(try NPYFile(path: path))
    } else if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) {
        source = NPYSource(try NPZ.open(path: path, array: array))
    } else if isImage(path) {
        return try ImageSource(paths: [path], inputShape: inputShape, options: options, name: path)
    } else if head.count < 4 || (head[0] == 0 && head[1] == 0) || (head[0] == 0x1F && head[1] == 0x8B) {
        // IDX (plain or gzipped); too short a file gets the IDX reader's own message.
        source = IDXSource(try IDXStream(path: path))
    } else if let text = try? String(contentsOfFile: path, encoding: .utf8), !text.contains("\u{0}") {
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        let files = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
            .map { $0.hasPrefix("/") ? $0 : base.appendingPathComponent($0).path }
        guard !files.isEmpty else { throw CLIFailure.badInput("\(path): lists no image files") }
        return try ImageSource(paths: files, inputShape: inputShape, options: options, name: path)
    } else {
        throw CLIFailure.badInput("\(path): not an input bnkit reads (IDX, .npy, .npz, PNG, JPEG, a folder of images or a list of image paths)")
    }
    if array != nil, !head.starts(with: [0x50, 0x4B, 0x03, 0x04]) {
        throw CLIFailure.badInput("\(path): --array applies to .npz archives")
    }
    guard source.itemSize == inputSize else {
        let dims: String
        if let npy = source as? NPYSource { dims = npy.file.itemShape.map(String.init).joined(separator: "×") }
        else if let idx = source as? IDXSource { dims = idx.stream.dimensions.dropFirst().map(String.init).joined(separator: "×") }
        else { dims = "?" }
        throw CLIFailure.badInput("\(source.name): each sample has \(source.itemSize) values (dimensions \(dims)) but the model takes \(inputSize) (shape \(inputShape))")
    }
    return source
}
