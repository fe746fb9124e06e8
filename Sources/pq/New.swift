import ArgumentParser
import Foundation
import PQCore

extension PQ {
    /// `pq new swift|c|rust NAME [--dir DIR]` (DESIGN.md section 13).
    struct New: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a plugin project whose `make` builds NAME.so with one job, NAME.hello.",
            discussion: """
                Languages: swift (a package that uses PQKit from this pq's source tree), c (needs \
                only pq_plugin.h, see `pq header`), rust (a cdylib with no crates: a hand-written \
                mirror of pq_plugin.h). NAME.hello takes `name` and returns "hello, <name>". \
                Then: make, and `pq install NAME.so NAME`.
                """)

        @Argument(help: "swift, c or rust.") var language: String
        @Argument(help: "The plugin's name, a slug ([a-z0-9][a-z0-9._-]*).") var name: String
        @Option(help: "The project folder (default ./NAME); it must not exist or be empty.") var dir: String?

        func run() async throws {
            try await reportingErrors {
                guard let kind = Scaffold.Language(rawValue: language) else {
                    throw CLIError("unknown language '\(language)' (use swift, c or rust)")
                }
                guard JobDefinition.isValidName(name) else {
                    throw CLIError(
                        "'\(name)' is not a plugin name: a slug ([a-z0-9][a-z0-9._-]*), e.g. 'mail' or 'my-jobs'")
                }
                let folder = dir ?? name
                let files = try Scaffold.files(kind, name: name)
                try Scaffold.write(files, into: folder)
                emit("wrote \(folder)/ (\(files.map(\.path).joined(separator: ", "))); next: cd \(folder) && make")
            }
        }
    }

    /// `pq header`: where pq_plugin.h is, for C (and other) plugins.
    struct Header: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the path of pq_plugin.h (with --dir, of its folder; with --print, its text).")
        @Flag(help: "Print the folder to pass to the compiler as -I.") var dir = false
        @Flag(help: "Print the header itself.") var print = false

        func run() async throws {
            try await reportingErrors {
                let header = try SourceTree.header()
                if print {
                    emit(try String(contentsOfFile: header, encoding: .utf8))
                } else {
                    emit(dir ? (header as NSString).deletingLastPathComponent : header)
                }
            }
        }
    }
}

/// The pq source tree this binary was built from: the header and PQKit live there.
enum SourceTree {
    /// The checkout: `PQ_SOURCE_DIR`, else the first folder above the running binary that holds
    /// pq's Package.swift and pq_plugin.h.
    static func root() throws -> String {
        let env = ProcessInfo.processInfo.environment
        if let given = env["PQ_SOURCE_DIR"], !given.isEmpty {
            guard isRoot(given) else {
                throw CLIError("PQ_SOURCE_DIR=\(given) is not a pq source tree (no \(headerPath) in it)")
            }
            return URL(fileURLWithPath: given).standardizedFileURL.path
        }
        let executable = executablePath()
        var folder = (executable as NSString).deletingLastPathComponent
        while folder != "/" && !folder.isEmpty {
            if isRoot(folder) { return folder }
            folder = (folder as NSString).deletingLastPathComponent
        }
        throw CLIError("cannot find pq's source tree above \(executable); set PQ_SOURCE_DIR")
    }

    static let headerPath = "Sources/CPQPlugin/include/pq_plugin.h"

    /// The running binary's file (`bin/pq` is a link into `.build`).
    private static func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func header() throws -> String { try root() + "/" + headerPath }

    private static func isRoot(_ folder: String) -> Bool {
        FileManager.default.fileExists(atPath: folder + "/" + headerPath)
            && FileManager.default.fileExists(atPath: folder + "/Package.swift")
    }
}

/// The files of a new plugin project.
enum Scaffold {
    enum Language: String { case swift, c, rust }

    struct File {
        var path: String
        var text: String
    }

    /// `NAME` as an identifier of C, Rust and Swift (`my-jobs.v2` → `my_jobs_v2`).
    static func identifier(_ name: String) -> String {
        let id = String(name.map { $0.isLetter || $0.isNumber ? $0 : "_" })
        return id.first?.isNumber == true ? "_" + id : id  // crates, modules and C symbols start with a letter
    }

    /// `text` inside a Swift string literal.
    static func swiftLiteral(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    }

    static func files(_ language: Language, name: String) throws -> [File] {
        let id = identifier(name)
        let readme = readme(language, name: name)
        switch language {
        case .c:
            let include = (try SourceTree.header() as NSString).deletingLastPathComponent
            return [
                File(path: "\(id).c", text: cSource(name: name)),
                File(path: "Makefile", text: cMakefile(name: name, id: id, include: include)),
                File(path: "README.md", text: readme),
            ]
        case .rust:
            return [
                File(path: "Cargo.toml", text: cargoToml(id: id)),
                File(path: "src/lib.rs", text: rustSource(name: name)),
                File(path: "src/pq_plugin.rs", text: try rustMirror()),
                File(path: "Makefile", text: rustMakefile(name: name, id: id)),
                File(path: "README.md", text: readme),
            ]
        case .swift:
            let root = try SourceTree.root()
            return [
                File(path: "Package.swift", text: swiftPackage(id: id, root: root)),
                File(path: "Sources/\(id)/\(id).swift", text: swiftSource(name: name)),
                File(path: "Makefile", text: swiftMakefile(name: name, id: id)),
                File(path: "README.md", text: readme),
                File(path: ".gitignore", text: ".build/\nPackage.resolved\n*.so\n"),
            ]
        }
    }

    /// Writes the files into `folder`, which must not exist or be empty; nothing is written when
    /// it holds anything.
    static func write(_ files: [File], into folder: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw CLIError("\(folder) exists and is not a folder") }
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
            guard entries.isEmpty else {
                throw CLIError("\(folder) is not empty; choose another --dir (nothing was written)")
            }
        }
        do {
            for file in files {
                let path = folder + "/" + file.path
                try FileManager.default.createDirectory(
                    atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try file.text.write(toFile: path, atomically: true, encoding: .utf8)
            }
        } catch {
            throw CLIError("cannot write into \(folder): \(error.localizedDescription)")
        }
    }

    static func readme(_ language: Language, name: String) -> String {
        let build: String
        switch language {
        case .c: build = "`make` compiles `\(identifier(name)).c` against `pq_plugin.h` (`pq header --dir`)."
        case .rust: build = "`make` runs `cargo build --release` (no crates) and copies the `cdylib`."
        case .swift: build = "`make` runs `swift build -c release` against PQKit and copies the library."
        }
        return """
            # \(name): a pq plugin

            One job, `\(name).hello`: takes `name` and returns `"hello, <name>"`.

            ```sh
            make                                  # builds \(name).so here
            pq install \(name).so \(identifier(name))           # checks it, then puts it under the plugins root
            pq serve --task-paths \(identifier(name)) &
            pq submit \(name).hello name=world --wait   # "hello, world"
            ```

            \(build) A running host picks a replaced `.so` up without a restart. The plugin author's guide
            is `docs/plugins.md` in pq's source tree.

            """
    }

    // MARK: C

    static func cSource(name: String) -> String {
        """
        /* \(name): a pq plugin in C. `make` builds \(name).so; `pq install \(name).so TASK_PATH` puts it live.
         *
         * \(name).hello is a typed job: the host reads `name` from the task's kwargs, calls hello()
         * through libffi on one of its threads, copies the returned string as the JSON result and
         * hands the string back to free_string(). A JSON job (run/complete) is shown in pq_plugin.h. */
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>

        #include "pq_plugin.h"

        static char *hello(const char *name) {
            size_t size = strlen(name) + sizeof "hello, ";
            char *out = malloc(size);
            if (out != NULL) snprintf(out, size, "hello, %s", name);
            return out; /* NULL becomes a null result */
        }

        static void free_string(char *s) { free(s); }

        static const pq_job_def jobs[] = {
            {"\(name).hello", "Greets `name`.", NULL, NULL, NULL, (void *)hello, "(name:str)->str"},
        };

        static const pq_plugin plugin = {
            PQ_ABI_VERSION, sizeof(pq_plugin), "\(name)", "0.1.0", "c",
            sizeof jobs / sizeof jobs[0], jobs, free_string,
        };

        const pq_plugin *pq_plugin_entry(uint32_t host_abi_version) {
            return host_abi_version == PQ_ABI_VERSION ? &plugin : NULL;
        }

        """
    }

    static func cMakefile(name: String, id: String, include: String) -> String {
        """
        # Builds \(name).so. PQ_INCLUDE is the folder of pq_plugin.h (`pq header --dir`).
        PQ_INCLUDE ?= \(include)
        CC ?= cc
        CFLAGS ?= -O2 -Wall -Wextra

        \(name).so: \(id).c
        \t$(CC) $(CFLAGS) -shared -fPIC -I"$(PQ_INCLUDE)" -o $@ $<

        clean:
        \trm -f \(name).so

        .PHONY: clean

        """
    }

    // MARK: Rust

    static func cargoToml(id: String) -> String {
        """
        [package]
        name = "\(id)"
        version = "0.1.0"
        edition = "2021"

        # A C-ABI shared library; no crates (pq_plugin.rs mirrors pq_plugin.h by hand).
        [lib]
        crate-type = ["cdylib"]
        path = "src/lib.rs"

        [profile.release]
        panic = "abort"

        # A project of its own, even inside another Cargo workspace.
        [workspace]

        """
    }

    static func rustSource(name: String) -> String {
        """
        //! \(name): a pq plugin in Rust. `make` builds \(name).so; `pq install \(name).so TASK_PATH` puts it live.
        //!
        //! `\(name).hello` is a typed job: the host reads `name` from the task's kwargs, calls `hello`
        //! through libffi on one of its threads, copies the returned string as the JSON result and
        //! hands it back to `free_string`.

        mod pq_plugin;

        use core::ffi::{c_char, c_void};
        use pq_plugin::{PqJobDef, PqPlugin, PQ_ABI_VERSION};
        use std::ffi::{CStr, CString};

        /// NUL-terminated text for the C side.
        macro_rules! c {
            ($text:expr) => {
                concat!($text, "\\0").as_ptr() as *const c_char
            };
        }

        unsafe extern "C" fn hello(name: *const c_char) -> *mut c_char {
            let name = if name.is_null() { "".into() } else { CStr::from_ptr(name).to_string_lossy() };
            CString::new(format!("hello, {}", name)).map(CString::into_raw).unwrap_or(core::ptr::null_mut())
        }

        unsafe extern "C" fn free_string(s: *mut c_char) {
            if !s.is_null() {
                drop(CString::from_raw(s));
            }
        }

        static JOBS: [PqJobDef; 1] = [PqJobDef {
            name: c!("\(name).hello"),
            doc: c!("Greets `name`."),
            options_json: core::ptr::null(),
            run: None,
            cancel: None,
            function: hello as *const c_void,
            signature: c!("(name:str)->str"),
        }];

        static PLUGIN: PqPlugin = PqPlugin {
            abi_version: PQ_ABI_VERSION,
            struct_size: core::mem::size_of::<PqPlugin>() as u32,
            name: c!("\(name)"),
            version: c!("0.1.0"),
            toolchain: c!("c"),
            job_count: 1,
            jobs: &JOBS as *const [PqJobDef; 1] as *const PqJobDef,
            free_string: Some(free_string),
        };

        #[no_mangle]
        pub extern "C" fn pq_plugin_entry(host_abi_version: u32) -> *const PqPlugin {
            if host_abi_version == PQ_ABI_VERSION { &PLUGIN } else { core::ptr::null() }
        }

        """
    }

    /// The hand-written mirror of pq_plugin.h v1, kept once in the source tree beside the Rust
    /// example (a test checks it against the header: sizes and offsets of every field).
    static let rustMirrorPath = "Plugins/examples-rust/src/pq_plugin.rs"

    static func rustMirror() throws -> String {
        let path = try SourceTree.root() + "/" + rustMirrorPath
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CLIError("cannot read \(path), the Rust mirror of pq_plugin.h")
        }
        return text
    }

    static func rustMakefile(name: String, id: String) -> String {
        """
        # Builds \(name).so with cargo (no crates: nothing to download).
        CARGO ?= cargo

        \(name).so: Cargo.toml $(wildcard src/*.rs)
        \t$(CARGO) build --release --offline
        \tcp target/release/lib\(id).so $@

        clean:
        \trm -rf target \(name).so

        .PHONY: clean

        """
    }

    // MARK: Swift

    static func swiftPackage(id: String, root: String) -> String {
        let identity = (root as NSString).lastPathComponent.lowercased()
        return """
            // swift-tools-version:6.0
            // A pq plugin: a dynamic library built with PQKit from pq's source tree (\(root)).
            // Build it with the same Swift toolchain as the host: the host refuses another one's plugins.
            import PackageDescription

            let package = Package(
                name: "\(id)",
                products: [.library(name: "\(id)", type: .dynamic, targets: ["\(id)"])],
                dependencies: [.package(path: "\(swiftLiteral(root))")],
                targets: [
                    .target(name: "\(id)", dependencies: [.product(name: "PQKit", package: "\(identity)")])
                ]
            )

            """
    }

    static func swiftSource(name: String) -> String {
        """
        // \(name): a pq plugin in Swift. `make` builds \(name).so; `pq install \(name).so TASK_PATH` puts it live.

        import PQKit

        /// The plugin's one exported symbol, which the host looks up after dlopen.
        @_cdecl("pq_plugin_entry")
        public func pqPluginEntry(_ hostABI: UInt32) -> UnsafeRawPointer? {
            PQPlugin.entry(hostABI, name: "\(name)", version: "0.1.0", jobs: [Hello.self])
        }

        /// `\(name).hello`: greets `name`.
        struct Hello: Job {
            struct Arguments: Decodable, Sendable {
                var name: String
            }

            static let name = "\(name).hello"
            static let doc = "Greets `name`."

            func run(_ arguments: Arguments, context: JobContext) async throws -> String {
                "hello, \\(arguments.name)"
            }
        }

        """
    }

    static func swiftMakefile(name: String, id: String) -> String {
        """
        # Builds \(name).so with SwiftPM (release, the Swift runtime linked dynamically as pq wants).
        SWIFT ?= swift

        \(name).so: Package.swift $(wildcard Sources/\(id)/*.swift)
        \t$(SWIFT) build -c release
        \tcp "$$($(SWIFT) build -c release --show-bin-path)/lib\(id).so" $@

        clean:
        \trm -rf .build \(name).so

        .PHONY: clean

        """
    }
}
