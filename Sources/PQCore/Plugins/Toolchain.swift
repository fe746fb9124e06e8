/// The toolchain string of the compiler that built this host, in the form plugins report it
/// (`"swift-X.Y.Z"`). The host refuses a Swift plugin whose toolchain differs, because Swift has
/// no stable ABI on Linux.
///
/// Swift offers no way to read the compiler version as a string, so it is derived from a
/// `#if compiler(>=...)` ladder; PQKit uses the same technique, so both agree on one toolchain.
public let hostSwiftToolchain: String = {
    #if compiler(>=7.0)
    return "swift-7.x"
    #elseif compiler(>=6.5)
    return "swift-6.5.x"
    #elseif compiler(>=6.4)
    #if compiler(>=6.4.3)
    return "swift-6.4.3"
    #elseif compiler(>=6.4.2)
    return "swift-6.4.2"
    #elseif compiler(>=6.4.1)
    return "swift-6.4.1"
    #else
    return "swift-6.4.0"
    #endif
    #elseif compiler(>=6.3)
    #if compiler(>=6.3.5)
    return "swift-6.3.5"
    #elseif compiler(>=6.3.4)
    return "swift-6.3.4"
    #elseif compiler(>=6.3.3)
    return "swift-6.3.3"
    #elseif compiler(>=6.3.2)
    return "swift-6.3.2"
    #elseif compiler(>=6.3.1)
    return "swift-6.3.1"
    #else
    return "swift-6.3.0"
    #endif
    #elseif compiler(>=6.2)
    #if compiler(>=6.2.4)
    return "swift-6.2.4"
    #elseif compiler(>=6.2.3)
    return "swift-6.2.3"
    #elseif compiler(>=6.2.2)
    return "swift-6.2.2"
    #elseif compiler(>=6.2.1)
    return "swift-6.2.1"
    #else
    return "swift-6.2.0"
    #endif
    #else
    return "swift-6.1-or-older"
    #endif
}()
