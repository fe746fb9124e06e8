import CPQSystem
import Glibc

/// Checks that a file is a complete ELF shared object for this machine before it is opened.
///
/// `dlopen` of a half-written `.so` kills the process with SIGBUS, so the loader reads the ELF
/// header, the program headers and the section header table (the `Elf64_Ehdr`/`Elf64_Phdr`
/// layouts of `<elf.h>`, through CPQSystem) and checks that everything they point at lies
/// inside the file.
public enum ELFCheck {
    #if arch(x86_64)
        static let machine = UInt16(EM_X86_64)
    #elseif arch(arm64)
        static let machine = UInt16(EM_AARCH64)
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
        var header = Elf64_Ehdr()
        let got = withUnsafeMutableBytes(of: &header) { pread(fd, $0.baseAddress, $0.count, 0) }
        let ident = withUnsafeBytes(of: header.e_ident) { Array($0) }
        guard got >= Int(EI_NIDENT), ident[Int(EI_MAG0)] == ELFMAG0, ident[Int(EI_MAG1)] == UInt8(ascii: "E"),
            ident[Int(EI_MAG2)] == UInt8(ascii: "L"), ident[Int(EI_MAG3)] == UInt8(ascii: "F")
        else {
            throw PluginError(.notELF, path: path, "not an ELF shared library (bad magic); is this really a .so?")
        }
        guard ident[Int(EI_CLASS)] == ELFCLASS64, ident[Int(EI_DATA)] == ELFDATA2LSB else {
            throw PluginError(.notELF, path: path, "not a 64-bit little-endian ELF file")
        }
        guard got == MemoryLayout<Elf64_Ehdr>.size else {
            throw PluginError(.truncated, path: path, "ELF header cut short (\(size) bytes): the file is incomplete")
        }
        guard header.e_type == UInt16(ET_DYN) else {
            throw PluginError(
                .notELF, path: path, "ELF file is not a shared object (e_type \(header.e_type)); build it with -shared")
        }
        guard header.e_machine == machine else {
            throw PluginError(.notELF, path: path, "ELF file is for another machine (e_machine \(header.e_machine))")
        }
        let phoff = header.e_phoff
        let shoff = header.e_shoff
        let phentsize = UInt64(header.e_phentsize)
        let phnum = UInt64(header.e_phnum)
        let shentsize = UInt64(header.e_shentsize)
        let shnum = UInt64(header.e_shnum)
        let phEnd = phoff &+ phentsize &* phnum
        guard phnum > 0, phentsize >= UInt64(MemoryLayout<Elf64_Phdr>.size), phEnd <= size else {
            throw PluginError(
                .truncated, path: path,
                "program headers end at byte \(phEnd) but the file has \(size): the file is incomplete (still being written?)"
            )
        }
        if shnum > 0 {
            let shEnd = shoff &+ shentsize &* shnum
            guard shEnd <= size, shoff >= UInt64(MemoryLayout<Elf64_Ehdr>.size) else {
                throw PluginError(
                    .truncated, path: path,
                    "section headers end at byte \(shEnd) but the file has \(size): the file is incomplete (still being written?)"
                )
            }
        }
        for i in 0..<phnum {
            var segment = Elf64_Phdr()
            let read = withUnsafeMutableBytes(of: &segment) {
                pread(fd, $0.baseAddress, $0.count, off_t(phoff + i * phentsize))
            }
            guard read == MemoryLayout<Elf64_Phdr>.size else {
                throw PluginError(.truncated, path: path, "cannot read the program headers: the file is incomplete")
            }
            // What the dynamic linker maps and reads.
            let end = segment.p_offset &+ segment.p_filesz
            if segment.p_type == UInt32(PT_LOAD) || segment.p_type == UInt32(PT_DYNAMIC),
                end > size || end < segment.p_offset
            {
                throw PluginError(
                    .truncated, path: path,
                    "segment \(i) ends at byte \(end) but the file has \(size): the file is incomplete")
            }
        }
    }
}
