import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Runs an iptables tool and collects its output (stdin optional).
///
/// posix_spawn and one poll loop over the three pipes, not Foundation's `Process`: `Process.waitUntilExit` runs a
/// CFRunLoop whose wakeup socket pair needs a working loopback, so in a network namespace whose `lo` is down it
/// never returned. The loop also cannot deadlock: stdin is written only as the child drains it, while stdout and
/// stderr are read.
enum Command {
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    struct SpawnError: Error, CustomStringConvertible {
        var argv: [String]
        var errno: Int32
        var description: String { "cannot run \(argv.joined(separator: " ")): \(String(cString: strerror(errno)))" }
    }

    private static let ignoreSIGPIPE: Void = { signal(SIGPIPE, SIG_IGN) }()

    static func run(_ argv: [String], input: [UInt8]? = nil) throws -> Output {
        var inPipe: [Int32] = [-1, -1], outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
        guard pipe(&inPipe) == 0, pipe(&outPipe) == 0, pipe(&errPipe) == 0 else {
            let e = errno
            for fd in inPipe + outPipe + errPipe where fd >= 0 { close(fd) }
            throw SpawnError(argv: argv, errno: e)
        }
        // Only the dup2'd copies reach the child (pipe2 is not visible from Swift's Glibc module).
        for fd in inPipe + outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if input != nil {
            posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        // `/usr/bin/env` finds the tool on PATH, as the previous implementation did.
        let args = ["/usr/bin/env"] + argv
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        // A child that exits before reading all of stdin must not kill this process with SIGPIPE; the child
        // itself gets the default disposition back.
        _ = Self.ignoreSIGPIPE
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/usr/bin/env", &actions, &attributes, &cargs, environ)
        close(inPipe[0])
        close(outPipe[1])
        close(errPipe[1])
        guard rc == 0 else {
            close(inPipe[1])
            close(outPipe[0])
            close(errPipe[0])
            throw SpawnError(argv: argv, errno: rc)
        }
        var stdinFD: Int32 = -1
        if let input, !input.isEmpty {
            stdinFD = inPipe[1]
            _ = fcntl(stdinFD, F_SETFL, fcntl(stdinFD, F_GETFL) | O_NONBLOCK)
        } else {
            close(inPipe[1])
        }
        var out: [UInt8] = [], err: [UInt8] = []
        var outFD = outPipe[0], errFD = errPipe[0]
        var written = 0
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while outFD >= 0 || errFD >= 0 || stdinFD >= 0 {
            var fds: [pollfd] = []
            if stdinFD >= 0 { fds.append(pollfd(fd: stdinFD, events: Int16(POLLOUT), revents: 0)) }
            if outFD >= 0 { fds.append(pollfd(fd: outFD, events: Int16(POLLIN), revents: 0)) }
            if errFD >= 0 { fds.append(pollfd(fd: errFD, events: Int16(POLLIN), revents: 0)) }
            if poll(&fds, nfds_t(fds.count), -1) < 0 {
                if errno == EINTR { continue }
                break
            }
            for p in fds where p.revents != 0 {
                if p.fd == stdinFD {
                    let n = input!.withUnsafeBytes { write(stdinFD, $0.baseAddress! + written, $0.count - written) }
                    if n > 0 { written += n }
                    if n < 0 && errno != EAGAIN && errno != EINTR || written == input!.count {
                        close(stdinFD)  // done, or the child stopped reading (EPIPE): it reports that itself
                        stdinFD = -1
                    }
                    continue
                }
                let n = chunk.withUnsafeMutableBytes { read(p.fd, $0.baseAddress!, $0.count) }
                if n > 0 {
                    if p.fd == outFD { out.append(contentsOf: chunk[0..<n]) } else { err.append(contentsOf: chunk[0..<n]) }
                } else if n == 0 || errno != EINTR && errno != EAGAIN {
                    close(p.fd)
                    if p.fd == outFD { outFD = -1 } else { errFD = -1 }
                }
            }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS, WTERMSIG: a signal reads as 128 + signal, as shells report it.
        let exit: Int32 = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        return Output(
            status: exit, stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
    }
}
