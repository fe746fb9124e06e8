import Glibc

/// Checks that a file is a complete ELF shared object for this machine before it is opened.
///
/// `dlopen` of a half-written `.so` kills the process with SIGBUS, so the loader reads the ELF
/// header, the program headers and the section header table and checks that everything they
/// point at lies inside the file.
public enum ELFCheck {
    #if arch(x86_64)
    static let machine: UInt16 = 62  // EM_X86_64
    #elseif arch(arm64)
    static let machine: UInt16 = 183  // EM_AARCH64
    #else
    static let machine: UInt16 = 0
    #endif

    /// Validates the file at `path`.
    /// - Parameters:
    ///   - path: the `.so` to check.
    ///   - reportedPath: the path errors name (the original file when `path` is a private copy).
    /// - Throws: ``PluginError`` (`unreadable`, `notELF` or `truncated`) with the reason.
    public static func validate(path: String, reportedPath: String? = nil) throws {
        do {
            try check(path: path)
        } catch let error as PluginError {
            throw PluginError(error.code, path: reportedPath ?? path, error.message)
        }
    }

    private static func check(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw PluginError(.unreadable, path: path, "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw PluginError(.unreadable, path: path, "cannot stat: \(String(cString: strerror(errno)))")
        }
        let size = UInt64(st.st_size)
        var header = [UInt8](repeating: 0, count: 64)
        let got = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 64, 0) }
        guard got >= 16, header[0] == 0x7F, header[1] == 0x45, header[2] == 0x4C, header[3] == 0x46 else {
            throw PluginError(.notELF, path: path, "not an ELF shared library (bad magic); is this really a .so?")
        }
        guard header[4] == 2, header[5] == 1 else {
            throw PluginError(.notELF, path: path, "not a 64-bit little-endian ELF file")
        }
        guard got == 64 else {
            throw PluginError(.truncated, path: path, "ELF header cut short (\(size) bytes): the file is incomplete")
        }
        func u16(_ o: Int) -> UInt64 { UInt64(header[o]) | UInt64(header[o + 1]) << 8 }
        func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(header[o + $1]) << (8 * UInt64($1)) } }
        let type = u16(16)
        guard type == 3 else {
            throw PluginError(.notELF, path: path, "ELF file is not a shared object (e_type \(type)); build it with -shared")
        }
        guard u16(18) == UInt64(machine) else {
            throw PluginError(.notELF, path: path, "ELF file is for another machine (e_machine \(u16(18)))")
        }
        let phoff = u64(32), shoff = u64(40)
        let phentsize = u16(54), phnum = u16(56), shentsize = u16(58), shnum = u16(60)
        let phEnd = phoff &+ phentsize &* phnum
        guard phnum > 0, phentsize >= 56, phEnd <= size else {
            throw PluginError(
                .truncated, path: path,
                "program headers end at byte \(phEnd) but the file has \(size): the file is incomplete (still being written?)")
        }
        if shnum > 0 {
            let shEnd = shoff &+ shentsize &* shnum
            guard shEnd <= size, shoff >= 64 else {
                throw PluginError(
                    .truncated, path: path,
                    "section headers end at byte \(shEnd) but the file has \(size): the file is incomplete (still being written?)")
            }
        }
        var phdrs = [UInt8](repeating: 0, count: Int(phentsize * phnum))
        let readPh = phdrs.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(phoff)) }
        guard readPh == phdrs.count else {
            throw PluginError(.truncated, path: path, "cannot read the program headers: the file is incomplete")
        }
        for i in 0..<Int(phnum) {
            let base = i * Int(phentsize)
            func p64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(phdrs[base + o + $1]) << (8 * UInt64($1)) } }
            let ptype = UInt32(truncatingIfNeeded: p64(0))
            let offset = p64(8), filesz = p64(32)
            // PT_LOAD (1) and PT_DYNAMIC (2) are what the dynamic linker maps and reads.
            if ptype == 1 || ptype == 2, offset &+ filesz > size || offset &+ filesz < offset {
                throw PluginError(
                    .truncated, path: path,
                    "segment \(i) ends at byte \(offset &+ filesz) but the file has \(size): the file is incomplete")
            }
        }
    }
}
