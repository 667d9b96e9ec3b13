#if canImport(Glibc)
    import Glibc
#endif

/// Standard output for the printing modes (`--dry-run`, `--help`, `--version`).
///
/// SIGPIPE is ignored in this process (swift-nio's and Foundation's sockets need it so), so a write into a pipe
/// whose reader has gone fails with EPIPE instead of ending the process, and Foundation's `FileHandle.write`
/// turns that into a fatal error with a backtrace. Here EPIPE ends the process the way it ends `iptables-save |
/// head`: quietly, by SIGPIPE (the shell reports status 141), with nothing on stderr.
enum StandardOutput {
    static func write(_ text: String) { self.write(text, fd: 1) }

    /// `--write-config-to PATH`: a regular file (or a new one) is replaced atomically; anything else that exists
    /// (a symlink such as `/dev/stdout`, a FIFO, a terminal) is truncated and written in place, as Go's
    /// `os.Create` does, with the same quiet end when a pipe's reader has gone.
    static func writeFile(_ text: String, to path: String) throws {
        // lstat, not stat: /dev/stdout is a symlink, and replacing it by rename would replace the link itself.
        var st = stat()
        guard lstat(path, &st) == 0, st.st_mode & S_IFMT != S_IFREG else {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return
        }
        let fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard fd >= 0 else {
            throw OpenError(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        self.write(text, fd: fd)
    }

    struct OpenError: Error, CustomStringConvertible {
        var path: String
        var reason: String
        var description: String { "\(path): \(reason)" }
    }

    private static func write(_ text: String, fd: Int32) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { buffer in
                Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if n >= 0 {
                offset += n
                continue
            }
            switch errno {
            case EINTR, EAGAIN:
                continue
            case EPIPE:
                readerGone()
            default:
                Stderr.line(
                    "kube-natd: cannot write to standard output: \(String(cString: strerror(errno)))")
                exit(1)
            }
        }
        bytes.removeAll()
    }

    /// Ends the process as the default SIGPIPE action would: no message, status 128+13 to the shell.
    static func readerGone() -> Never {
        signal(SIGPIPE, SIG_DFL)
        raise(SIGPIPE)
        _exit(128 + SIGPIPE)  // not reached unless SIGPIPE is blocked
    }
}

/// Standard error, one line per call; a closed stderr is not an error worth dying for.
enum Stderr {
    static func line(_ s: String) {
        let bytes = Array((s + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }
}
