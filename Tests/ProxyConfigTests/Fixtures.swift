/// Example configurations the tests read.
enum Fixtures {
    /// What `kubeadm init` writes into the kube-proxy ConfigMap: every field present, most as 0s, null or "".
    static let kubeadm = """
        apiVersion: kubeproxy.config.k8s.io/v1alpha1
        bindAddress: 0.0.0.0
        bindAddressHardFail: false
        clientConnection:
          acceptContentTypes: ""
          burst: 0
          contentType: ""
          kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
          qps: 0
        clusterCIDR: 10.244.0.0/16
        configSyncPeriod: 0s
        conntrack:
          maxPerCore: null
          min: null
          tcpBeLiberal: false
          tcpCloseWaitTimeout: null
          tcpEstablishedTimeout: null
          udpStreamTimeout: 0s
          udpTimeout: 0s
        detectLocal:
          bridgeInterface: ""
          interfaceNamePrefix: ""
        detectLocalMode: ""
        enableProfiling: false
        healthzBindAddress: ""
        hostnameOverride: ""
        iptables:
          localhostNodePorts: null
          masqueradeAll: false
          masqueradeBit: null
          minSyncPeriod: 0s
          syncPeriod: 0s
        ipvs:
          excludeCIDRs: null
          minSyncPeriod: 0s
          scheduler: ""
          strictARP: false
          syncPeriod: 0s
          tcpFinTimeout: 0s
          tcpTimeout: 0s
          udpTimeout: 0s
        kind: KubeProxyConfiguration
        logging:
          flushFrequency: 0
          options:
            json:
              infoBufferSize: "0"
            text:
              infoBufferSize: "0"
          verbosity: 0
        metricsBindAddress: ""
        mode: ""
        nftables:
          masqueradeAll: false
          masqueradeBit: null
          minSyncPeriod: 0s
          syncPeriod: 0s
        nodePortAddresses: null
        oomScoreAdj: null
        portRange: ""
        showHiddenMetricsForVersion: ""
        winkernel:
          enableDSR: false
          forwardHealthCheckVip: false
          networkName: ""
          rootHnsEndpointName: ""
          sourceVip: ""
        """

    /// The smallest valid file.
    static let minimal = """
        apiVersion: kubeproxy.config.k8s.io/v1alpha1
        kind: KubeProxyConfiguration
        """

    /// A minimal file with extra lines appended.
    static func minimal(_ extra: String) -> String { minimal + "\n" + extra }

    /// A JSON file with non-default values everywhere kube-natd cares about.
    static let json = """
        {
          "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
          "kind": "KubeProxyConfiguration",
          "hostnameOverride": "worker-7",
          "bindAddress": "fd00::10",
          "clusterCIDR": "10.244.0.0/16,fd00:10:244::/56",
          "detectLocalMode": "ClusterCIDR",
          "featureGates": {"PreferSameTrafficDistribution": true, "AllAlpha": false},
          "iptables": {"masqueradeBit": 0, "masqueradeAll": true, "localhostNodePorts": false,
                       "syncPeriod": "1m", "minSyncPeriod": "500ms"},
          "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpBeLiberal": true,
                        "udpTimeout": "30s", "udpStreamTimeout": "2m0s"},
          "nodePortAddresses": ["192.168.0.0/16", "localhost"],
          "oomScoreAdj": -500,
          "portRange": "300-2000",
          "clientConnection": {"qps": 20.5, "burst": 40, "kubeconfig": "/etc/kube/k.conf"},
          "logging": {"format": "json", "flushFrequency": "10s", "verbosity": 4,
                      "vmodule": [{"filePattern": "proxier*", "verbosity": 6}]}
        }
        """
}
