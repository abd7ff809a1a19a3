// A small, checked Swift wrapper over libhdf5.
//
// Every C call goes through `check`, which turns a negative return into an
// `HDF5Error` carrying the operation and HDF5's own innermost message
// (libhdf5's automatic printing to stderr is switched off). Every handle is
// owned by exactly one Swift object that closes it in `deinit`. Nothing above
// this module sees `hid_t` or a pointer.

import CHDF5
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An HDF5 operation failed.
public struct HDF5Error: Error, CustomStringConvertible, Sendable {
    /// What we were doing, e.g. `open dataset 'model_weights/dense/kernel:0'`.
    public let operation: String
    /// HDF5's innermost message, or our own explanation.
    public let detail: String

    public init(operation: String, detail: String) {
        self.operation = operation
        self.detail = detail
    }

    public var description: String {
        detail.isEmpty ? "cannot \(operation)" : "cannot \(operation): \(detail)"
    }
}

/// libhdf5, opened on first use (it is not linked: see CHDF5), with its error
/// stack printing turned off; errors become values.
private let library: Result<bnkit_h5_api, HDF5Error> = {
    var message = [CChar](repeating: 0, count: 512)
    guard let api = bnkit_h5_load(&message, message.count) else {
        return .failure(HDF5Error(operation: "load libhdf5",
                                  detail: String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)))
    }
    bnkit_H5_silence_errors()
    return .success(api.pointee)
}()

/// Loads libhdf5 if it is not yet loaded; throws when it cannot be.
func requireLibrary() throws {
    _ = try library.get()
}

/// The HDF5 functions; only used after `requireLibrary()` succeeded (every HDF5
/// object descends from an `HDF5File`, whose constructors require it).
var h5: bnkit_h5_api {
    guard case .success(let api) = library else { preconditionFailure("libhdf5 used before it was loaded") }
    return api
}

/// Debian's libhdf5 is built without thread safety: no two of its calls may run at
/// once. Every entry point of bnkit's HDF5 use (reading or writing a Keras file, and a
/// handle's closing) holds this one process-wide lock; it is recursive, so nested uses
/// are fine. See `withHDF5Lock`.
nonisolated(unsafe) private let hdf5Mutex: UnsafeMutablePointer<pthread_mutex_t> = {
    let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    var attributes = pthread_mutexattr_t()
    pthread_mutexattr_init(&attributes)
    pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_RECURSIVE))
    pthread_mutex_init(mutex, &attributes)
    pthread_mutexattr_destroy(&attributes)
    return mutex
}()

/// Runs `body` holding the process-wide libhdf5 lock (recursive). Everything that
/// calls libhdf5 from more than one thread must go through it.
public func withHDF5Lock<T>(_ body: () throws -> T) rethrows -> T {
    pthread_mutex_lock(hdf5Mutex)
    defer { pthread_mutex_unlock(hdf5Mutex) }
    return try body()
}

/// The one place a libhdf5 return code is judged.
@discardableResult
func check<T: BinaryInteger>(_ result: T, _ operation: @autoclosure () -> String) throws -> T {
    if result < 0 {
        var buffer = [CChar](repeating: 0, count: 512)
        bnkit_H5_last_error(&buffer)
        let detail = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        _ = h5.H5Eclear2(bnkit_H5E_DEFAULT())
        throw HDF5Error(operation: operation(), detail: detail)
    }
    return result
}

/// An owned HDF5 identifier, closed with its matching close function.
final class Handle {
    let id: hid_t
    private let close: (hid_t) -> herr_t

    init(_ id: hid_t, close: @escaping (hid_t) -> herr_t) {
        self.id = id
        self.close = close
    }

    deinit { withHDF5Lock { _ = close(id) } }
}

/// An HDF5 file, opened for reading or writing.
public final class HDF5File {
    let handle: Handle
    /// The path the file was opened with (used in messages).
    public let path: String

    private init(handle: Handle, path: String) {
        self.handle = handle
        self.path = path
    }

    /// Opens an existing file. The file must be an HDF5 file.
    public static func open(_ path: String, writable: Bool = false) throws -> HDF5File {
        try withHDF5Lock { try openLocked(path, writable: writable) }
    }

    private static func openLocked(_ path: String, writable: Bool) throws -> HDF5File {
        try requireLibrary()
        let isHDF5 = try check(h5.H5Fis_hdf5(path), "read '\(path)' as HDF5")
        guard isHDF5 > 0 else {
            throw HDF5Error(operation: "open '\(path)'", detail: "not an HDF5 file")
        }
        let flags = writable ? bnkit_H5F_ACC_RDWR() : bnkit_H5F_ACC_RDONLY()
        let id = try check(h5.H5Fopen(path, flags, bnkit_H5P_DEFAULT()), "open '\(path)'")
        return HDF5File(handle: Handle(id, close: h5.H5Fclose), path: path)
    }

    /// Creates a new file, replacing any file at `path`.
    public static func create(_ path: String) throws -> HDF5File {
        try withHDF5Lock {
            try requireLibrary()
            return try createLocked(path)
        }
    }

    private static func createLocked(_ path: String) throws -> HDF5File {
        let id = try check(h5.H5Fcreate(path, bnkit_H5F_ACC_TRUNC(), bnkit_H5P_DEFAULT(), bnkit_H5P_DEFAULT()), "create '\(path)'")
        return HDF5File(handle: Handle(id, close: h5.H5Fclose), path: path)
    }

    /// The root group `/`.
    public func root() throws -> HDF5Group {
        try HDF5Group(file: self, path: "/")
    }

    /// Writes everything buffered to disk.
    public func flush() throws {
        try check(h5.H5Fflush(handle.id, H5F_SCOPE_GLOBAL), "flush '\(path)'")
    }
}

/// Attribute access shared by groups and datasets.
public protocol HDF5AttributeHolder {
    var objectID: hid_t { get }
    var objectPath: String { get }
}

/// The type of values in an attribute or dataset, as far as bnkit cares.
public enum HDF5ValueClass: Equatable, Sendable {
    case string
    case float
    case integer
    case other
}

extension HDF5AttributeHolder {
    /// Whether an attribute with this name exists.
    public func hasAttribute(_ name: String) throws -> Bool {
        try check(h5.H5Aexists(objectID, name), "look up attribute '\(name)' of '\(objectPath)'") > 0
    }

    /// The names of all attributes, in creation/name order.
    public func attributeNames() throws -> [String] {
        var info = H5O_info_t()
        try check(h5.H5Oget_info2(objectID, &info, UInt32(H5O_INFO_NUM_ATTRS)), "inspect '\(objectPath)'")
        var names: [String] = []
        for index in 0..<info.num_attrs {
            let length = try check(h5.H5Aget_name_by_idx(objectID, ".", H5_INDEX_NAME, H5_ITER_INC, index, nil, 0, bnkit_H5P_DEFAULT()),
                                   "read attribute names of '\(objectPath)'")
            var buffer = [CChar](repeating: 0, count: Int(length) + 1)
            try check(h5.H5Aget_name_by_idx(objectID, ".", H5_INDEX_NAME, H5_ITER_INC, index, &buffer, buffer.count, bnkit_H5P_DEFAULT()),
                      "read attribute names of '\(objectPath)'")
            names.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names
    }

    /// Reads a string attribute (scalar or one-element array; variable- or
    /// fixed-length; ASCII or UTF-8).
    public func stringAttribute(_ name: String) throws -> String {
        let values = try stringArrayAttribute(name)
        guard values.count == 1 else {
            throw HDF5Error(operation: "read attribute '\(name)' of '\(objectPath)'",
                            detail: "expected one string, found \(values.count)")
        }
        return values[0]
    }

    /// Reads a string-array attribute (variable- or fixed-length). An empty
    /// attribute of any type (h5py writes `[]` as an empty float array)
    /// reads as no strings.
    public func stringArrayAttribute(_ name: String) throws -> [String] {
        let what = "read attribute '\(name)' of '\(objectPath)'"
        let attribute = Handle(try check(h5.H5Aopen(objectID, name, bnkit_H5P_DEFAULT()), what), close: h5.H5Aclose)
        let space = Handle(try check(h5.H5Aget_space(attribute.id), what), close: h5.H5Sclose)
        let count = Int(try check(h5.H5Sget_simple_extent_npoints(space.id), what))
        if count == 0 { return [] }
        let fileType = Handle(try check(h5.H5Aget_type(attribute.id), what), close: h5.H5Tclose)
        guard h5.H5Tget_class(fileType.id) == H5T_STRING else {
            throw HDF5Error(operation: what, detail: "not a string attribute")
        }
        let memoryType = Handle(try check(h5.H5Tcopy(bnkit_H5T_C_S1()), what), close: h5.H5Tclose)
        try check(h5.H5Tset_cset(memoryType.id, h5.H5Tget_cset(fileType.id)), what)
        if try check(h5.H5Tis_variable_str(fileType.id), what) > 0 {
            try check(h5.H5Tset_size(memoryType.id, bnkit_H5T_VARIABLE()), what)
            var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            try check(h5.H5Aread(attribute.id, memoryType.id, &pointers), what)
            defer { _ = h5.H5Dvlen_reclaim(memoryType.id, space.id, bnkit_H5P_DEFAULT(), &pointers) }
            return try pointers.map { pointer in
                guard let pointer else { return "" }
                return try decodeUTF8(UnsafeRawBufferPointer(start: pointer, count: strlen(pointer)), what)
            }
        } else {
            let size = h5.H5Tget_size(fileType.id)
            guard size > 0, size <= 1 << 24, count <= (1 << 28) / size else {
                throw HDF5Error(operation: what, detail: "implausible string size \(size) × \(count)")
            }
            try check(h5.H5Tset_size(memoryType.id, size), what)
            // Same padding as stored: a null-terminated memory type would drop the last character.
            try check(h5.H5Tset_strpad(memoryType.id, H5T_STR_NULLPAD), what)
            var bytes = [UInt8](repeating: 0, count: size * count)
            try check(h5.H5Aread(attribute.id, memoryType.id, &bytes), what)
            return try (0..<count).map { index in
                var slice = bytes[(index * size)..<((index + 1) * size)]
                if let end = slice.firstIndex(of: 0) { slice = slice[slice.startIndex..<end] }
                while let last = slice.last, last == 0x20 { slice = slice.dropLast() }
                return try slice.withUnsafeBytes { try decodeUTF8($0, what) }
            }
        }
    }

    /// Writes a scalar variable-length UTF-8 string attribute (as h5py does for `str`).
    public func setStringAttribute(_ name: String, _ value: String) throws {
        let what = "write attribute '\(name)' of '\(objectPath)'"
        try deleteAttributeIfPresent(name)
        let type = Handle(try check(h5.H5Tcopy(bnkit_H5T_C_S1()), what), close: h5.H5Tclose)
        try check(h5.H5Tset_size(type.id, bnkit_H5T_VARIABLE()), what)
        try check(h5.H5Tset_cset(type.id, H5T_CSET_UTF8), what)
        let space = Handle(try check(h5.H5Screate(H5S_SCALAR), what), close: h5.H5Sclose)
        let attribute = Handle(try check(h5.H5Acreate2(objectID, name, type.id, space.id, bnkit_H5P_DEFAULT(), bnkit_H5P_DEFAULT()), what),
                               close: h5.H5Aclose)
        try value.withCString { cString in
            var pointer: UnsafePointer<CChar>? = cString
            try check(h5.H5Awrite(attribute.id, type.id, &pointer), what)
        }
    }

    /// Writes a one-dimensional array of variable-length UTF-8 strings.
    public func setStringArrayAttribute(_ name: String, _ values: [String]) throws {
        let what = "write attribute '\(name)' of '\(objectPath)'"
        try deleteAttributeIfPresent(name)
        let type = Handle(try check(h5.H5Tcopy(bnkit_H5T_C_S1()), what), close: h5.H5Tclose)
        try check(h5.H5Tset_size(type.id, bnkit_H5T_VARIABLE()), what)
        try check(h5.H5Tset_cset(type.id, H5T_CSET_UTF8), what)
        var dims = [hsize_t(values.count)]
        let space = Handle(try check(h5.H5Screate_simple(1, &dims, nil), what), close: h5.H5Sclose)
        let attribute = Handle(try check(h5.H5Acreate2(objectID, name, type.id, space.id, bnkit_H5P_DEFAULT(), bnkit_H5P_DEFAULT()), what),
                               close: h5.H5Aclose)
        let cStrings = values.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        var pointers = cStrings.map { UnsafePointer<CChar>($0) }
        try check(h5.H5Awrite(attribute.id, type.id, &pointers), what)
    }

    /// Writes fixed-length, null-padded ASCII strings (as h5py does for numpy
    /// `S` arrays, the form older Keras versions used for `layer_names`).
    /// `scalar` writes a single string as a scalar attribute.
    public func setFixedStringAttribute(_ name: String, _ values: [String], scalar: Bool = false) throws {
        let what = "write attribute '\(name)' of '\(objectPath)'"
        guard !scalar || values.count == 1 else { throw HDF5Error(operation: what, detail: "a scalar needs one string") }
        try deleteAttributeIfPresent(name)
        let width = max(values.map(\.utf8.count).max() ?? 1, 1)
        let type = Handle(try check(h5.H5Tcopy(bnkit_H5T_C_S1()), what), close: h5.H5Tclose)
        try check(h5.H5Tset_size(type.id, width), what)
        try check(h5.H5Tset_strpad(type.id, H5T_STR_NULLPAD), what)
        var dims = [hsize_t(values.count)]
        let space = Handle(try check(scalar ? h5.H5Screate(H5S_SCALAR) : h5.H5Screate_simple(1, &dims, nil), what), close: h5.H5Sclose)
        let attribute = Handle(try check(h5.H5Acreate2(objectID, name, type.id, space.id, bnkit_H5P_DEFAULT(), bnkit_H5P_DEFAULT()), what),
                               close: h5.H5Aclose)
        var bytes = [UInt8](repeating: 0, count: width * values.count)
        for (index, value) in values.enumerated() {
            for (offset, byte) in value.utf8.enumerated() { bytes[index * width + offset] = byte }
        }
        try check(h5.H5Awrite(attribute.id, type.id, &bytes), what)
    }

    /// Removes an attribute; an error if it does not exist.
    public func deleteAttribute(_ name: String) throws {
        try check(h5.H5Adelete(objectID, name), "delete attribute '\(name)' of '\(objectPath)'")
    }

    private func deleteAttributeIfPresent(_ name: String) throws {
        if try hasAttribute(name) { try deleteAttribute(name) }
    }
}

private func decodeUTF8(_ bytes: UnsafeRawBufferPointer, _ what: String) throws -> String {
    guard let string = String(validating: bytes, as: UTF8.self) else {
        throw HDF5Error(operation: what, detail: "string is not valid UTF-8")
    }
    return string
}

/// What an object in the file is.
public enum HDF5ObjectKind: Equatable, Sendable {
    case group, dataset, other
}

/// An open HDF5 group.
public final class HDF5Group: HDF5AttributeHolder {
    let file: HDF5File
    let handle: Handle
    /// The group's path inside the file.
    public let path: String

    init(file: HDF5File, path: String) throws {
        self.file = file
        self.path = path
        handle = Handle(try check(h5.H5Gopen2(file.handle.id, path, bnkit_H5P_DEFAULT()), "open group '\(path)' in '\(file.path)'"),
                        close: h5.H5Gclose)
    }

    public var objectID: hid_t { handle.id }
    public var objectPath: String { path }

    private func childPath(_ name: String) -> String {
        path == "/" ? "/" + name : path + "/" + name
    }

    /// Whether every link along `relativePath` exists (without following
    /// anything but hard links).
    public func hasChild(_ relativePath: String) throws -> Bool {
        var prefix = ""
        for component in relativePath.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += prefix.isEmpty ? String(component) : "/" + component
            let exists = try check(h5.H5Lexists(handle.id, prefix, bnkit_H5P_DEFAULT()), "look up '\(childPath(prefix))'")
            if exists <= 0 { return false }
        }
        return !prefix.isEmpty
    }

    /// Whether every link along `relativePath` is a hard link (no soft or
    /// external links, which could point anywhere, even to another file).
    public func allLinksAreHard(_ relativePath: String) throws -> Bool {
        var prefix = ""
        for component in relativePath.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += prefix.isEmpty ? String(component) : "/" + component
            var info = H5L_info_t()
            try check(h5.H5Lget_info(handle.id, prefix, &info, bnkit_H5P_DEFAULT()), "inspect the link '\(childPath(prefix))'")
            if info.type != H5L_TYPE_HARD { return false }
        }
        return true
    }

    /// The kind of object at `relativePath`.
    public func childKind(_ relativePath: String) throws -> HDF5ObjectKind {
        var info = H5O_info_t()
        try check(h5.H5Oget_info_by_name2(handle.id, relativePath, &info, UInt32(H5O_INFO_BASIC), bnkit_H5P_DEFAULT()),
                  "inspect '\(childPath(relativePath))'")
        switch info.type {
        case H5O_TYPE_GROUP: return .group
        case H5O_TYPE_DATASET: return .dataset
        default: return .other
        }
    }

    /// Opens a subgroup.
    public func group(_ relativePath: String) throws -> HDF5Group {
        try HDF5Group(file: file, path: childPath(relativePath))
    }

    /// Opens a dataset.
    public func dataset(_ relativePath: String) throws -> HDF5Dataset {
        try HDF5Dataset(file: file, path: childPath(relativePath))
    }

    /// Creates a group, creating intermediate groups as needed.
    @discardableResult
    public func createGroup(_ relativePath: String) throws -> HDF5Group {
        let what = "create group '\(childPath(relativePath))'"
        let linkProperties = Handle(try check(h5.H5Pcreate(bnkit_H5P_LINK_CREATE()), what), close: h5.H5Pclose)
        try check(h5.H5Pset_create_intermediate_group(linkProperties.id, 1), what)
        let id = try check(h5.H5Gcreate2(handle.id, relativePath, linkProperties.id, bnkit_H5P_DEFAULT(), bnkit_H5P_DEFAULT()), what)
        _ = h5.H5Gclose(id)
        return try group(relativePath)
    }

    /// Creates an int64 dataset (optimizer iteration counters and the like).
    @discardableResult
    public func createInt64Dataset(_ relativePath: String, shape: [Int], values: [Int64]) throws -> HDF5Dataset {
        try values.withUnsafeBufferPointer { buffer in
            try createDataset(relativePath, shape: shape, count: values.count, fileType: bnkit_H5T_STD_I64LE(),
                              memoryType: bnkit_H5T_NATIVE_INT64(), values: UnsafeRawPointer(buffer.baseAddress))
        }
    }

    /// Creates a float32 dataset with the given shape and values, creating
    /// intermediate groups as needed (Keras weight names contain `/`).
    @discardableResult
    public func createFloatDataset(_ relativePath: String, shape: [Int], values: [Float]) throws -> HDF5Dataset {
        try values.withUnsafeBufferPointer { buffer in
            try createDataset(relativePath, shape: shape, count: values.count, fileType: bnkit_H5T_IEEE_F32LE(),
                              memoryType: bnkit_H5T_NATIVE_FLOAT(), values: UnsafeRawPointer(buffer.baseAddress))
        }
    }

    private func createDataset(_ relativePath: String, shape: [Int], count: Int, fileType: hid_t, memoryType: hid_t,
                               values: UnsafeRawPointer?) throws -> HDF5Dataset {
        let what = "create dataset '\(childPath(relativePath))'"
        guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) == count else {
            throw HDF5Error(operation: what, detail: "shape \(shape) does not hold \(count) values")
        }
        let linkProperties = Handle(try check(h5.H5Pcreate(bnkit_H5P_LINK_CREATE()), what), close: h5.H5Pclose)
        try check(h5.H5Pset_create_intermediate_group(linkProperties.id, 1), what)
        var dims = shape.map { hsize_t($0) }
        let space = Handle(try check(h5.H5Screate_simple(Int32(dims.count), &dims, nil), what), close: h5.H5Sclose)
        let dataset = Handle(try check(h5.H5Dcreate2(handle.id, relativePath, fileType, space.id,
                                                  linkProperties.id, bnkit_H5P_DEFAULT(), bnkit_H5P_DEFAULT()), what),
                             close: h5.H5Dclose)
        try check(h5.H5Dwrite(dataset.id, memoryType, bnkit_H5S_ALL(), bnkit_H5S_ALL(), bnkit_H5P_DEFAULT(), values), what)
        return try self.dataset(relativePath)
    }

    /// Copies the object at `relativePath` (a group with everything in it, or
    /// a dataset, attributes included) into `destination` under `name`.
    public func copy(_ relativePath: String, to destination: HDF5Group, as name: String) throws {
        try check(h5.H5Ocopy(handle.id, relativePath, destination.handle.id, name, bnkit_H5P_DEFAULT(), bnkit_H5P_DEFAULT()),
                  "copy '\(childPath(relativePath))' to '\(destination.file.path)'")
    }

    /// The names of the links directly in this group, in name order.
    public func childNames() throws -> [String] {
        var info = H5G_info_t()
        try check(h5.H5Gget_info(handle.id, &info), "list '\(path)'")
        var names: [String] = []
        for index in 0..<info.nlinks {
            let length = try check(h5.H5Lget_name_by_idx(handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, index, nil, 0, bnkit_H5P_DEFAULT()),
                                   "list '\(path)'")
            var buffer = [CChar](repeating: 0, count: Int(length) + 1)
            try check(h5.H5Lget_name_by_idx(handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, index, &buffer, buffer.count, bnkit_H5P_DEFAULT()),
                      "list '\(path)'")
            names.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names
    }

    /// Creates a soft link `name` pointing at `target` (a path in this file).
    public func createSoftLink(_ name: String, to target: String) throws {
        try check(h5.H5Lcreate_soft(target, handle.id, name, bnkit_H5P_DEFAULT(), bnkit_H5P_DEFAULT()), "create the soft link '\(childPath(name))'")
    }

    /// Creates an external link `name` pointing at `object` in the file `file`.
    public func createExternalLink(_ name: String, file: String, object: String) throws {
        try check(h5.H5Lcreate_external(file, object, handle.id, name, bnkit_H5P_DEFAULT(), bnkit_H5P_DEFAULT()),
                  "create the external link '\(childPath(name))'")
    }

    /// How a dataset is stored, for files that exercise readers.
    public enum Storage: Sendable {
        case contiguous
        /// Raw data in another file (`h5.H5Pset_external`).
        case external(file: String)
        /// Chunked with the Fletcher-32 checksum filter.
        case fletcher32
        /// Chunked with deflate and shuffle (what Keras files may use).
        case deflate
    }

    /// Creates a float32 dataset stored as `storage`.
    public func createFloatDataset(_ relativePath: String, shape: [Int], values: [Float], storage: Storage) throws {
        let what = "create dataset '\(childPath(relativePath))'"
        let properties = Handle(try check(h5.H5Pcreate(bnkit_H5P_DATASET_CREATE()), what), close: h5.H5Pclose)
        var chunk = shape.map { hsize_t(max($0, 1)) }
        switch storage {
        case .contiguous: break
        case .external(let file):
            try check(h5.H5Pset_external(properties.id, file, 0, hsize_t(values.count * 4)), what)
        case .fletcher32:
            try check(h5.H5Pset_chunk(properties.id, Int32(chunk.count), &chunk), what)
            try check(h5.H5Pset_fletcher32(properties.id), what)
        case .deflate:
            try check(h5.H5Pset_chunk(properties.id, Int32(chunk.count), &chunk), what)
            try check(h5.H5Pset_shuffle(properties.id), what)
            try check(h5.H5Pset_deflate(properties.id, 4), what)
        }
        var dims = shape.map { hsize_t($0) }
        let space = Handle(try check(h5.H5Screate_simple(Int32(dims.count), &dims, nil), what), close: h5.H5Sclose)
        let dataset = Handle(try check(h5.H5Dcreate2(handle.id, relativePath, bnkit_H5T_IEEE_F32LE(), space.id,
                                                  bnkit_H5P_DEFAULT(), properties.id, bnkit_H5P_DEFAULT()), what), close: h5.H5Dclose)
        _ = try values.withUnsafeBufferPointer { buffer in
            try check(h5.H5Dwrite(dataset.id, bnkit_H5T_NATIVE_FLOAT(), bnkit_H5S_ALL(), bnkit_H5S_ALL(), bnkit_H5P_DEFAULT(),
                               buffer.baseAddress), what)
        }
    }

    /// Removes the link `relativePath` (the object goes when nothing else links to it).
    public func deleteLink(_ relativePath: String) throws {
        try check(h5.H5Ldelete(handle.id, relativePath, bnkit_H5P_DEFAULT()), "delete '\(childPath(relativePath))'")
    }
}

/// An open HDF5 dataset.
public final class HDF5Dataset: HDF5AttributeHolder {
    let file: HDF5File
    let handle: Handle
    /// The dataset's path inside the file.
    public let path: String

    init(file: HDF5File, path: String) throws {
        self.file = file
        self.path = path
        handle = Handle(try check(h5.H5Dopen2(file.handle.id, path, bnkit_H5P_DEFAULT()), "open dataset '\(path)'"),
                        close: h5.H5Dclose)
    }

    public var objectID: hid_t { handle.id }
    public var objectPath: String { path }

    /// The dataset's dimensions (empty for a scalar).
    public func shape() throws -> [Int] {
        let what = "read the shape of '\(path)'"
        let space = Handle(try check(h5.H5Dget_space(handle.id), what), close: h5.H5Sclose)
        let rank = Int(try check(h5.H5Sget_simple_extent_ndims(space.id), what))
        guard rank <= 32 else { throw HDF5Error(operation: what, detail: "rank \(rank) is too large") }
        var dims = [hsize_t](repeating: 0, count: rank)
        try check(h5.H5Sget_simple_extent_dims(space.id, &dims, nil), what)
        return dims.map { Int(clamping: $0) }
    }

    /// Why the dataset's storage is refused, or nil when it is plain:
    /// bnkit reads contiguous, compact or chunked data, filtered at most by
    /// deflate and shuffle; virtual datasets and external raw storage (which
    /// read other files) and any other filter are refused.
    public func storageProblem() throws -> String? {
        let what = "inspect the storage of '\(path)'"
        let properties = Handle(try check(h5.H5Dget_create_plist(handle.id), what), close: h5.H5Pclose)
        let layout = h5.H5Pget_layout(properties.id)
        if layout == H5D_VIRTUAL { return "a virtual dataset (its data lives in other datasets or files)" }
        if layout.rawValue < 0 { return "an unreadable storage layout" }
        let external = try check(h5.H5Pget_external_count(properties.id), what)
        if external > 0 { return "external raw storage (its data lives in other files)" }
        let filters = try check(h5.H5Pget_nfilters(properties.id), what)
        for index in 0..<filters {
            var flags: UInt32 = 0
            var count = 0
            var name = [CChar](repeating: 0, count: 64)
            var config: UInt32 = 0
            let filter = h5.H5Pget_filter2(properties.id, UInt32(index), &flags, &count, nil, name.count, &name, &config)
            // 1: deflate (gzip), 2: shuffle.
            if filter != 1 && filter != 2 {
                return "the HDF5 filter \(filter) (only deflate and shuffle are accepted)"
            }
        }
        return nil
    }

    /// The class of the stored values.
    public func valueClass() throws -> HDF5ValueClass {
        let type = Handle(try check(h5.H5Dget_type(handle.id), "read the type of '\(path)'"), close: h5.H5Tclose)
        switch h5.H5Tget_class(type.id) {
        case H5T_FLOAT: return .float
        case H5T_INTEGER: return .integer
        case H5T_STRING: return .string
        default: return .other
        }
    }

    /// Reads all values converted to Int64 (the stored type must be an integer type).
    public func readInt64s() throws -> [Int64] {
        try readAll(as: bnkit_H5T_NATIVE_INT64(), requiring: .integer, describedAs: "integers", zero: 0)
    }

    /// Reads all values converted to Float (the stored type must be a float type).
    public func readFloats() throws -> [Float] {
        try readAll(as: bnkit_H5T_NATIVE_FLOAT(), requiring: .float, describedAs: "floating point", zero: 0)
    }

    /// Every value, converted by libhdf5 to `memoryType`, after checking the stored class and the size.
    private func readAll<Value>(as memoryType: hid_t, requiring valueClass: HDF5ValueClass, describedAs name: String,
                                zero: Value) throws -> [Value] {
        let what = "read '\(path)'"
        guard try self.valueClass() == valueClass else {
            throw HDF5Error(operation: what, detail: "values are not \(name)")
        }
        let shape = try shape()
        var count = 1
        for dimension in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow, product <= 1 << 31 else { throw HDF5Error(operation: what, detail: "shape \(shape) is too large") }
            count = product
        }
        var values = [Value](repeating: zero, count: count)
        if count > 0 {
            _ = try values.withUnsafeMutableBufferPointer { buffer in
                try check(h5.H5Dread(handle.id, memoryType, bnkit_H5S_ALL(), bnkit_H5S_ALL(), bnkit_H5P_DEFAULT(),
                                  buffer.baseAddress), what)
            }
        }
        return values
    }
}
