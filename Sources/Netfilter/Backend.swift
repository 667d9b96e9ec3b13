import KubeModel
import Ruleset

/// What one apply did, per table.
public struct ApplyReport: Sendable, CustomStringConvertible {
    /// Whether the table was first compared from one raw read of its entries (libiptc backend).
    public enum Check: Int, Sendable {
        /// Not compared first: the program differed from the last one written.
        case none = 0
        /// It already held the wanted state: no iptc_init, no commit.
        case unchanged = 1
        /// It differed: written through libiptc as usual.
        case differed = 2
    }

    /// One table's outcome.
    public struct TableReport: Sendable {
        public var family: IPFamily
        public var table: Table
        public var attempts: Int = 1
        public var lockWaitSeconds: Double = 0
        /// Encoding the IR (Swift), building libiptc's cache, and iptc_commit (kernel replace), in seconds.
        public var encodeSeconds: Double = 0
        /// iptc_init alone: the kernel copying the table out and libiptc parsing it (part of buildSeconds).
        public var initSeconds: Double = 0
        public var buildSeconds: Double = 0
        public var commitSeconds: Double = 0
        public var chainsCreated: Int = 0
        /// Existing declared chains whose rules differed (flushed and refilled).
        public var chainsFlushed: Int = 0
        /// Existing declared chains that already held exactly their rules (left untouched).
        public var chainsUnchanged: Int = 0
        /// False when the table already held the wanted state and no commit was needed (libiptc backend).
        public var committed: Bool = true
        public var check: Check = .none
        /// Reading the entries for the check (when not prefetched) and comparing.
        public var checkSeconds: Double = 0
        public var chainsDeleted: Int = 0
        public var rulesAppended: Int = 0
        public var jumpsInserted: Int = 0
        public var rulesDeleted: Int = 0
        /// Non-fatal problems, e.g. a stale chain kept because a foreign rule still jumps to it.
        public var warnings: [String] = []
        public init(family: IPFamily, table: Table) {
            self.family = family
            self.table = table
        }
    }

    /// Every table touched or compared, of every family applied.
    public var tables: [TableReport] = []
    /// The restore text (restore and dry-run backends), nil for the kernel-API backends.
    public var text: String?
    /// nf_tables: netlink messages and batches sent (0 when the kernel already held the wanted state).
    public var messages = 0
    public var batches = 0

    public init() {}

    /// Appends another apply's tables (e.g. the next family's).
    public mutating func merge(_ other: ApplyReport) {
        self.tables += other.tables
        self.messages += other.messages
        self.batches += other.batches
        if let t = other.text { self.text = (self.text ?? "") + t }
    }

    /// Total seconds spent waiting for /run/xtables.lock.
    public var lockWaitSeconds: Double { self.tables.reduce(0) { $0 + $1.lockWaitSeconds } }

    public var description: String {
        self.tables.map {
            "\($0.family.flagName) \($0.table.rawValue): attempts=\($0.attempts) lockWait=\(String(format: "%.3f", $0.lockWaitSeconds))s "
                + "encode=\(String(format: "%.3f", $0.encodeSeconds))s "
                + ($0.check == .none ? "" : "check=\(String(format: "%.3f", $0.checkSeconds))s(\($0.check == .unchanged ? "unchanged" : "differed")) ")
                + "init=\(String(format: "%.3f", $0.initSeconds))s build=\(String(format: "%.3f", $0.buildSeconds))s "
                + ($0.committed ? "commit=\(String(format: "%.3f", $0.commitSeconds))s " : "commit=skipped(unchanged) ")
                + "created=\($0.chainsCreated) flushed=\($0.chainsFlushed) unchanged=\($0.chainsUnchanged) deleted=\($0.chainsDeleted) "
                + "rules=\($0.rulesAppended) jumpsInserted=\($0.jumpsInserted) rulesDeleted=\($0.rulesDeleted)"
                + ($0.warnings.isEmpty ? "" : " warnings=\($0.warnings)")
        }.joined(separator: "\n")
    }
}

/// A failure to program the kernel, with its place.
public enum NetfilterError: Error, CustomStringConvertible, Sendable {
    /// Encoding the IR failed before anything touched the kernel.
    case encoding(EncodingError)
    /// libiptc (or the lock) failed; the message names table, chain and rule where known.
    case libiptc(family: IPFamily, table: Table, errno: Int32, message: String)
    /// An external command failed.
    case command(String, status: Int32, stderr: String)
    /// The backend cannot do this (the message says why).
    case unsupported(String)

    public var description: String {
        switch self {
        case .encoding(let e): "encoding: \(e)"
        case .libiptc(let family, _, let errno, let message): "\(family.flagName) libiptc: \(message) (errno \(errno))"
        case .command(let cmd, let status, let stderr): "\(cmd) exited \(status): \(stderr)"
        case .unsupported(let why): why
        }
    }
}
