// swift-tools-version:6.0
import PackageDescription

// MARK: - Products

let package = Package(
    name: "bnkit",
    products: [
        .library(name: "BNKit", targets: ["BNKit"]),
        .library(name: "ModelIR", targets: ["ModelIR"]),
        .library(name: "KerasHDF5", targets: ["KerasHDF5"]),
        .library(name: "NativeFormat", targets: ["NativeFormat"]),
        .library(name: "ONNXFormat", targets: ["ONNXFormat"]),
        .library(name: "IDX", targets: ["IDX"]),
        .library(name: "NumPy", targets: ["NumPy"]),
        .library(name: "Images", targets: ["Images"]),
        .library(name: "BNFolding", targets: ["BNFolding"]),
        .library(name: "Runtime", targets: ["Runtime"]),
        .library(name: "BNStatistics", targets: ["BNStatistics"]),
        .executable(name: "bnconv", targets: ["bnconv"]),
        .executable(name: "bnrun", targets: ["bnrun"]),
        .executable(name: "bnkit-hdf5-reader", targets: ["bnkit-hdf5-reader"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.19"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // MARK: - System libraries (C), wrapped once
        // libhdf5 is opened with dlopen on first use (see Sources/CHDF5/include/chdf5.h).
        .target(name: "CHDF5", linkerSettings: [.linkedLibrary("dl")]),
        .systemLibrary(
            name: "CBNKitZlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .systemLibrary(
            name: "CBNKitDeflate",
            pkgConfig: "libdeflate",
            providers: [.apt(["libdeflate-dev"])]
        ),
        .target(name: "HDF5", dependencies: ["CHDF5"]),

        // MARK: - Model representation: knows no file format
        .target(name: "ModelIR"),

        // MARK: - Formats
        .target(name: "BoundedJSON"),
        .target(name: "KerasHDF5", dependencies: ["HDF5", "ModelIR", "BoundedJSON", "ScratchFiles", .product(name: "ZIPFoundation", package: "ZIPFoundation")]),
        .target(name: "CCRC32C", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "NativeFormat", dependencies: ["ModelIR", "BoundedJSON", "CCRC32C"]),
        .target(name: "IDX", dependencies: ["CBNKitZlib", "CBNKitDeflate"]),
        .target(name: "NumPy", dependencies: ["ScratchFiles", .product(name: "ZIPFoundation", package: "ZIPFoundation")]),
        .systemLibrary(name: "CBNKitPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CBNKitJPEG", providers: [.apt(["libjpeg-dev"])]),
        .target(name: "CImageDecode", dependencies: ["CBNKitPNG", "CBNKitJPEG"], cSettings: [.unsafeFlags(["-O2"])],
                linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("jpeg")]),
        .target(name: "Images", dependencies: ["CImageDecode"]),
        .target(name: "ScratchFiles"),
        .target(name: "AtomicFile", dependencies: ["ScratchFiles"]),
        // ONNX: the message types generated from onnx.proto (tools/generate_onnx_proto.sh), and the format module.
        .target(name: "ONNXProto", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .target(name: "ONNXFormat", dependencies: ["ModelIR", "ONNXProto", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),

        // MARK: - The library API: load, change, save
        .target(name: "BNKit", dependencies: ["ModelIR", "KerasHDF5", "NativeFormat", "ONNXFormat", "AtomicFile", "BNStatistics", "ScratchFiles"]),

        // MARK: - Transformations and execution
        .target(name: "BNFolding", dependencies: ["ModelIR"]),
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]),
        .target(name: "Runtime", dependencies: ["ModelIR", "CKernels"]),
        // Batch statistics: recalibrating BN layers from data (runs models through Runtime)
        .target(name: "BNStatistics", dependencies: ["ModelIR", "Runtime"]),

        // MARK: - Command-line tools (thin)
        .target(
            name: "BNKitCLI",
            dependencies: ["BNKit", "ModelIR", "KerasHDF5", "NativeFormat", "IDX", "NumPy", "Images", "BNFolding", "Runtime", "BNStatistics", "AtomicFile", "ONNXFormat"],
            path: "Sources/BNKitCLI"
        ),
        .executableTarget(
            name: "bnconv",
            dependencies: ["BNKitCLI", "Runtime", "BNKit", "Images", "ScratchFiles", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "bnrun",
            dependencies: ["BNKitCLI", "ScratchFiles", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),

        .executableTarget(name: "bnkit-hdf5-reader", dependencies: ["BNKit"]),

        // MARK: - Fuzz targets (tools/fuzz.sh builds them with libFuzzer; plain builds replay inputs)
        .target(name: "FuzzSupport"),
        .executableTarget(name: "fuzz-native", dependencies: ["NativeFormat", "FuzzSupport"]),
        .executableTarget(name: "fuzz-idx", dependencies: ["IDX", "FuzzSupport"]),
        .executableTarget(name: "fuzz-keras-config", dependencies: ["KerasHDF5", "FuzzSupport"]),
        .executableTarget(name: "fuzz-npy", dependencies: ["NumPy", "FuzzSupport"]),
        .executableTarget(name: "fuzz-image", dependencies: ["Images", "FuzzSupport"]),
        .executableTarget(name: "fuzz-onnx", dependencies: ["ONNXFormat", "ModelIR", "Runtime", "FuzzSupport"]),

        // MARK: - Tests
        .target(name: "TestSupport", dependencies: ["ModelIR", "IDX"], path: "Tests/TestSupport"),
        .testTarget(name: "HDF5Tests", dependencies: ["HDF5", "TestSupport"]),
        .testTarget(name: "ModelIRTests", dependencies: ["ModelIR"]),
        .testTarget(name: "IDXTests", dependencies: ["IDX", "TestSupport"]),
        .testTarget(name: "NativeFormatTests", dependencies: ["NativeFormat", "ModelIR", "KerasHDF5", "BNFolding", "TestSupport"]),
        .testTarget(name: "KerasHDF5Tests", dependencies: ["KerasHDF5", "HDF5", "Runtime", "TestSupport"]),
        .testTarget(name: "BNFoldingTests", dependencies: ["BNFolding", "Runtime", "TestSupport"]),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "CKernels", "TestSupport"]),
        .testTarget(name: "BNKitTests", dependencies: ["BNKit", "AtomicFile", "ScratchFiles", "IDX", "TestSupport"]),
        .testTarget(name: "InputTests", dependencies: ["NumPy", "Images", "IDX", "TestSupport"]),
        .testTarget(name: "ONNXFormatTests", dependencies: ["ONNXFormat", "ONNXProto", "ModelIR", "Runtime", "TestSupport"]),
        .testTarget(name: "BNStatisticsTests", dependencies: ["BNStatistics", "Runtime", "TestSupport"]),
        .testTarget(name: "EndToEndTests", dependencies: ["BNKit", "KerasHDF5", "NativeFormat", "BNFolding", "Runtime", "IDX", "HDF5", "BNKitCLI", "TestSupport", "bnconv", "bnrun", "bnkit-hdf5-reader",
                                                         .product(name: "ZIPFoundation", package: "ZIPFoundation")]),
    ]
)
