import Glibc

/// The trust rule of DESIGN.md section 4: a plugin file, or the directory holding it, must not be
/// writable by its group or by others, and must be owned by root or by the host's user.
public enum PluginTrust {
    /// The command-line flag that turns the check off.
    public static let optOutFlag = "--trust-all-plugins"
    /// The environment variable that turns the check off (`1`).
    public static let optOutEnv = "PQ_TRUST_ALL_PLUGINS"

    /// Checks the file and its directory.
    /// - Parameter path: the plugin file.
    /// - Throws: ``PluginError`` with code `untrusted`, naming the path and the opt-out.
    public static func check(path: String) throws {
        let dir = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        try checkOne(path, what: "plugin file")
        try checkOne(dir.isEmpty ? "/" : dir, what: "plugin directory")
    }

    private static func checkOne(_ path: String, what: String) throws {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw PluginError(.unreadable, path: path, "cannot stat \(what): \(String(cString: strerror(errno)))")
        }
        let me = getuid()
        if st.st_uid != 0 && st.st_uid != me {
            throw PluginError(
                .untrusted, path: path,
                "refusing \(what) owned by uid \(st.st_uid) (neither root nor the host's uid \(me)); "
                    + "fix the owner or pass \(optOutFlag) (env \(optOutEnv)=1) to load it anyway")
        }
        if st.st_mode & (S_IWGRP | S_IWOTH) != 0 {
            let mode = String(st.st_mode & 0o777, radix: 8)
            throw PluginError(
                .untrusted, path: path,
                "refusing \(what) writable by group or others (mode \(mode)); "
                    + "run chmod go-w on it or pass \(optOutFlag) (env \(optOutEnv)=1) to load it anyway")
        }
    }
}
