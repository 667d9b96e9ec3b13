// swift-tools-version: 6.1
import PackageDescription

// Data flows one way: KubeSource -> KubeModel (ClusterState) -> RuleCompiler -> Ruleset -> Netfilter -> kernel.
// Swift 5 language mode: the daemon's concurrency is actor-based, but strict Sendable checking across
// C pointers in the shim costs more than it buys at this stage.
let package = Package(
    name: "kube-natd",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "kube-natd", targets: ["kube-natd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
    ],
    targets: [
        .target(name: "KubeModel", dependencies: [.product(name: "Yams", package: "Yams")]),
        .target(name: "ProxyConfig", dependencies: ["KubeModel", .product(name: "Yams", package: "Yams")]),
        .target(name: "Ruleset", dependencies: ["KubeModel"]),
        .target(name: "RuleCompiler", dependencies: [
            "KubeModel", "ProxyConfig", "Ruleset",
        ]),
        // The flat rule program both kernel shims replay, and the xt extension blobs they share.
        .target(name: "CRuleProgram"),
        .target(
            name: "CNetfilter",
            dependencies: ["CRuleProgram"],
            linkerSettings: [
                .linkedLibrary("ip4tc"), .linkedLibrary("ip6tc"),
                .linkedLibrary("netfilter_conntrack"), .linkedLibrary("nfnetlink"), .linkedLibrary("mnl"),
            ]
        ),
        // The nf_tables shim: the same rules as iptables-nft's expressions, one netlink batch per sync.
        .target(
            name: "CNftables",
            dependencies: ["CRuleProgram"],
            linkerSettings: [.linkedLibrary("nftnl"), .linkedLibrary("mnl")]
        ),
        .target(name: "Netfilter", dependencies: [
            "KubeModel", "Ruleset", "CRuleProgram", "CNetfilter", "CNftables",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "KubeSource", dependencies: [
            "KubeModel", .product(name: "Logging", package: "swift-log"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        .target(name: "Daemon", dependencies: [
            "KubeModel", "ProxyConfig", "Ruleset", "RuleCompiler", "Netfilter", "KubeSource",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .executableTarget(name: "kube-natd", dependencies: [
            "Daemon", "Netfilter", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Tooling (Tools/): test drivers and benchmark programs, not part of the product.
        // Kernel-test driver: hand-built Rulesets covering every Match/Target, applied with a chosen backend.
        .executableTarget(name: "netfilter-harness", dependencies: ["Netfilter", "Ruleset", "KubeModel"],
                          path: "Tools/netfilter-harness"),
        // Kernel-test driver of the libnftnl backend: compiles as `kube-natd --once` does, applies, reads back.
        .executableTarget(name: "nft-harness", dependencies: [
            "Netfilter", "Ruleset", "KubeModel", "ProxyConfig", "RuleCompiler", "Daemon",
            "CNftables",  // test-only fault injection (knft_test_fault)
        ], path: "Tools/nft-harness"),
        // Kernel e2e and soak: a plain-HTTP apiserver stand-in (list/watch/discovery plus a control API).
        .executableTarget(name: "fake-apiserver", dependencies: [
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ], path: "Tools/fake-apiserver"),
        .target(name: "SyntheticCluster", dependencies: ["KubeModel"], path: "Tools/SyntheticCluster"),
        // The bare libiptc floor for `make bench`: init + one small change + commit of an IPv4 table.
        .target(name: "CBenchFloor", path: "Tools/CBenchFloor", linkerSettings: [.linkedLibrary("ip4tc")]),
        .executableTarget(name: "natd-bench", dependencies: [
            "SyntheticCluster", "RuleCompiler", "Ruleset", "ProxyConfig", "KubeModel", "KubeSource", "CBenchFloor",
            "Netfilter", "Daemon",
        ], path: "Tools/natd-bench"),
        .testTarget(name: "KubeModelTests", dependencies: ["KubeModel"]),
        .testTarget(name: "ProxyConfigTests", dependencies: ["ProxyConfig"]),
        .testTarget(name: "RuleCompilerTests", dependencies: [
                        "RuleCompiler", "Ruleset", "KubeModel", "ProxyConfig", "KubeSource",
                        // Cross-checks the compiler's own SHA-256 (chain names).
                        .product(name: "Crypto", package: "swift-crypto"),
                    ],
                    resources: [.copy("Golden")]),
        .testTarget(name: "NetfilterTests", dependencies: ["Netfilter", "Ruleset"]),
        .testTarget(name: "NftablesTests", dependencies: ["Netfilter", "Ruleset", "KubeModel", "CNftables", "CRuleProgram"]),
        .testTarget(name: "KubeSourceTests", dependencies: [
            "KubeSource", "KubeModel",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "X509", package: "swift-certificates"), .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
        ]),
        .testTarget(name: "DaemonTests", dependencies: [
            "Daemon", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
    ],
    swiftLanguageModes: [.v5]
)
