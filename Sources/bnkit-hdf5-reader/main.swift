// The isolated HDF5 reader for apps that use the BNKit library: placed next to the
// app's executable (or named by BNKIT_HDF5_READER), `Model.load` parses Keras files
// in it, so a damaged file cannot crash or hang the app. See docs/HOSTILE_INPUT.md.
import BNKit
import Foundation

HDF5ChildProcess.serveIfRequested()
FileHandle.standardError.write(Data("bnkit-hdf5-reader: started by bnkit's Model.load to parse Keras files in isolation; not for direct use\n".utf8))
exit(64)
