import KubeModel
import Ruleset

// Kernel limits are checked here, on each Service's fragment as it is derived, rather than on the assembled
// ruleset: only here is it known which Service a rule of KUBE-SERVICES belongs to, the check costs what the
// change costs (a one-endpoint sync checks one Service, a cached fragment is never checked again), and leaving a
// Service out is a patch the compiler already knows how to make (its fragment is empty) and reports in its
// `RulesetChange`, so every backend's kept per-chain state stays right.

extension ServiceFragment {
    /// Where each list of the fragment ends now: what `limitViolations(since:)` checks from.
    struct Marks {
        var natServices = 0, natNodePorts = 0, filterServices = 0, filterExternalServices = 0, filterNodePorts = 0
        var filterProxyFirewall = 0, natChains = 0
    }

    var marks: Marks {
        Marks(natServices: natServices.count, natNodePorts: natNodePorts.count, filterServices: filterServices.count,
              filterExternalServices: filterExternalServices.count, filterNodePorts: filterNodePorts.count,
              filterProxyFirewall: filterProxyFirewall.count, natChains: natChains.count)
    }

    /// `KernelLimits` over what was written since `start` (one service port's rules and chains). A Service's
    /// rules in a shared chain are named by the chain only: their position there depends on the other Services.
    func limitViolations(since start: Marks) -> [KernelLimits.Violation] {
        var out: [KernelLimits.Violation] = []
        func shared(_ rules: [Rule], from: Int, _ table: Table, _ chain: String) {
            for rule in rules[from...] {
                out += KernelLimits.violations(of: rule, table: table, chain: chain, index: 0)
            }
        }
        shared(natServices, from: start.natServices, .nat, Ownership.services)
        shared(natNodePorts, from: start.natNodePorts, .nat, Ownership.nodePorts)
        shared(filterServices, from: start.filterServices, .filter, Ownership.services)
        shared(filterExternalServices, from: start.filterExternalServices, .filter, Ownership.externalServices)
        shared(filterNodePorts, from: start.filterNodePorts, .filter, Ownership.nodePorts)
        shared(filterProxyFirewall, from: start.filterProxyFirewall, .filter, Ownership.proxyFirewall)
        for chain in natChains[start.natChains...] { out += KernelLimits.violations(in: chain, table: .nat) }
        return out
    }
}
