import KubeModel

/// How the node decides that a packet comes from a local pod (`detectLocalMode`).
public enum LocalTrafficDetector: Hashable, Sendable {
    /// No detector: no masquerade rule for ClusterIPs and no pod short-circuit in EXT chains (as upstream).
    case none
    /// `ClusterCIDR` / `NodeCIDR`: `-s <cidr>` is local, `! -s <cidr>` is not.
    case cidr(CIDR)
    /// `BridgeInterface`: `-i <bridge>`.
    case bridgeInterface(String)
    /// `InterfaceNamePrefix`: `-i <prefix>+`.
    case interfaceNamePrefix(String)
}

/// `nodePortAddresses`, resolved.
public enum NodePortAddresses: Hashable, Sendable {
    /// Unset: NodePorts on every local address (one `--dst-type LOCAL` rule).
    case all
    /// The node's addresses that fall in these CIDRs (one `-d <ip>` rule each), resolved by the daemon.
    case addresses([IPAddress])
}

/// kube-proxy's nfacct accounting objects (pkg/proxy/metrics): each one's `-m nfacct` match is written only when
/// the object could be created on this node.
public enum NFAcctCounter: String, Hashable, Sendable, CaseIterable, Comparable {
    /// Counts the packets the INVALID conntrack-state DROP rule drops.
    case ctStateInvalidDropped = "ct_state_invalid_dropped_pkts"
    /// Counts the packets accepted on localhost NodePorts.
    case localhostNodePortsAccepted = "localhost_nps_accepted_pkts"

    public static func < (a: NFAcctCounter, b: NFAcctCounter) -> Bool { a.rawValue < b.rawValue }
}

/// Kernel features that may be absent; the dry run assumes what the config or a probe says.
public struct KernelFeatures: Hashable, Sendable {
    public var randomFully: Bool
    /// The nfacct objects that exist (or that kube-natd creates before writing): their matches go in the rules.
    public var nfacct: Set<NFAcctCounter>
    /// Every nfacct object exists (true) or none (false).
    public var nfacctCounters: Bool {
        get { self.nfacct == Set(NFAcctCounter.allCases) }
        set { self.nfacct = newValue ? Set(NFAcctCounter.allCases) : [] }
    }
    public init(randomFully: Bool = false, nfacctCounters: Bool = false) {
        self.randomFully = randomFully
        self.nfacct = nfacctCounters ? Set(NFAcctCounter.allCases) : []
    }
    public init(randomFully: Bool = false, nfacct: Set<NFAcctCounter>) {
        self.randomFully = randomFully
        self.nfacct = nfacct
    }
}

/// Which generation of kube-proxy's rule layout to write (`--rule-layout`).
public enum RuleLayout: String, Hashable, Sendable, CaseIterable {
    /// Today's layout: KUBE-SVC/SVL/EXT/FW/SEP chains, KUBE-PROXY-FIREWALL, drops in filter.
    case current
    /// Kubernetes v1.23's layout: KUBE-XLB chains, KUBE-FW chains ending in KUBE-MARK-DROP, masquerading in
    /// KUBE-SVC chains; relies on kubelet's KUBE-MARK-DROP and KUBE-FIREWALL rules (ensured by kube-natd).
    case v1_23 = "v1.23"
}

/// Everything the compiler needs to know about this node, for one IP family.
public struct NodeSettings: Hashable, Sendable {
    public var family: IPFamily
    public var nodeName: String
    /// The node's IPs of this family (used for the LB source-range node-IP special case).
    public var nodeIPs: [IPAddress]
    public var masqueradeBit: Int
    public var masqueradeAll: Bool
    public var localhostNodePorts: Bool
    public var localDetector: LocalTrafficDetector
    public var nodePortAddresses: NodePortAddresses
    /// `conntrack.tcpBeLiberal`: when set there is no INVALID DROP rule.
    public var conntrackTCPBeLiberal: Bool
    public var features: KernelFeatures
    public var ruleLayout: RuleLayout

    public init(family: IPFamily = .ipv4, nodeName: String, nodeIPs: [IPAddress] = [], masqueradeBit: Int = 14,
                masqueradeAll: Bool = false, localhostNodePorts: Bool = true, localDetector: LocalTrafficDetector = .none,
                nodePortAddresses: NodePortAddresses = .all, conntrackTCPBeLiberal: Bool = false,
                features: KernelFeatures = .init(), ruleLayout: RuleLayout = .current) {
        self.family = family
        self.nodeName = nodeName
        self.nodeIPs = nodeIPs
        self.masqueradeBit = masqueradeBit
        self.masqueradeAll = masqueradeAll
        self.localhostNodePorts = localhostNodePorts
        self.localDetector = localDetector
        self.nodePortAddresses = nodePortAddresses
        self.conntrackTCPBeLiberal = conntrackTCPBeLiberal
        self.features = features
        self.ruleLayout = ruleLayout
    }

    /// `1 << masqueradeBit`.
    public var masqueradeMark: UInt32 { UInt32(1) << UInt32(masqueradeBit) }
}
