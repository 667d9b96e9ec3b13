/// The feature gates kube-proxy's `--feature-gates` and `featureGates` accept, checked as component-base's
/// `SetFromMap` checks them: an unknown name is an error naming it, and a gate locked to its default (a
/// graduated one) cannot be set to the other value. kube-proxy registers every Kubernetes gate (it shares
/// `utilfeature.DefaultMutableFeatureGate` with the other components), so a cluster-wide `--feature-gates`
/// that kubeadm or a distribution passes to every component must load here too.
///
/// None of these gates changes what kube-natd's iptables mode writes: the graduated networking gates are
/// locked on (their behaviour is always there), and the rest are recorded in `featureGates` and otherwise
/// unused, as in kube-proxy's iptables proxier.
public enum FeatureGates {
    /// Graduated gates locked to true (setting one to false is an error, as upstream): the networking gates that
    /// went GA up to Kubernetes 1.33, and the gates upstream's versioned specs (v1.32) mark `LockToDefault`.
    static let lockedOn: Set<String> = [
        "KubeProxyDrainingTerminatingNodes", "LoadBalancerIPMode", "MultiCIDRServiceAllocator", "NFTablesProxyMode",
        "ServiceTrafficDistribution", "TopologyAwareHints",
        "APIListChunking", "AdmissionWebhookMatchConditions", "AggregatedDiscoveryEndpoint", "AppArmor",
        "AppArmorFields", "CPUManager", "CustomResourceFieldSelectors", "DevicePluginCDIDevices",
        "DisableCloudProviders", "DisableKubeletCloudCredentialProviders", "EfficientWatchResumption",
        "ElasticIndexedJob", "HPAContainerMetrics", "JobPodFailurePolicy", "LogarithmicScaleDown",
        "PDBUnhealthyPodEvictionPolicy", "PersistentVolumeLastPhaseTransitionTime", "PodDisruptionConditions",
        "PodHostIPs", "PodSchedulingReadiness", "RemainingItemCount", "RetryGenerateName",
        "ServiceAccountTokenJTI", "ServiceAccountTokenNodeBindingValidation", "ServiceAccountTokenPodNodeInfo",
        "StatefulSetStartOrdinal", "StrictCostEnforcementForVAP", "StrictCostEnforcementForWebhooks",
        "StructuredAuthorizationConfiguration", "WatchBookmark", "ZeroLimitedNominalConcurrencyShares",
    ]

    /// Gate names, from upstream's pkg/features (kube_features.go and versioned_kube_features.go as of v1.32,
    /// with the apiserver, apiextensions and controller-manager gates they list), client-go, component-base
    /// (logs, metrics, zpages), and gates added since that we know of. A gate newer than this list is refused,
    /// as by an older kube-proxy: extend the list when upstream adds gates.
    static let known: Set<String> = lockedOn.union([
        "AllAlpha", "AllBeta", "CloudControllerManagerWebhook", "CRDValidationRatcheting",
        // component-base: logging, metrics, zpages
        "ContextualLogging", "LoggingAlphaOptions", "LoggingBetaOptions", "ComponentSLIs", "ComponentFlagz",
        "ComponentStatusz",
        // client-go
        "ClientsAllowCBOR", "ClientsPreferCBOR", "InformerResourceVersion", "InOrderInformers", "WatchListClient",
        // apiserver
        "APIResponseCompression", "APIServerIdentity", "APIServerTracing", "APIServingWithRoutine",
        "AdmissionWebhookMatchConditions", "AggregatedDiscoveryEndpoint", "AllowParsingUserUIDFromCertAuth",
        "AllowUnsafeMalformedObjectDeletion", "AnonymousAuthConfigurableEndpoints", "AuthorizeWithSelectors",
        "BtreeWatchCache", "CBORServingAndStorage", "ConcurrentWatchObjectDecode", "ConsistentListFromCache",
        "KMSv1", "ListFromCacheSnapshot", "MutatingAdmissionPolicy", "OpenAPIEnums", "RemainingItemCount",
        "ResilientWatchCacheInitialization", "RetryGenerateName", "SeparateCacheWatchRPC", "StorageVersionAPI",
        "StorageVersionHash", "StrictCostEnforcementForVAP", "StrictCostEnforcementForWebhooks",
        "StructuredAuthenticationConfiguration", "StructuredAuthorizationConfiguration",
        "UnauthenticatedHTTP2DOSMitigation", "WatchBookmark", "WatchCacheInitializationPostStartHook",
        "WatchFromStorageWithoutResourceVersion", "WatchList",
        // pkg/features
        "AllowDNSOnlyNodeCSR", "AllowInsecureKubeletCertificateSigningRequests",
        "AllowOverwriteTerminationGracePeriodSeconds", "AnyVolumeDataSource", "AppArmor", "AppArmorFields",
        "AuthorizeNodeWithSelectors", "CPUManager", "CPUManagerPolicyAlphaOptions", "CPUManagerPolicyBetaOptions",
        "CPUManagerPolicyOptions", "CSIMigrationPortworx", "CSIVolumeHealth", "ClusterTrustBundle",
        "ClusterTrustBundleProjection", "ContainerCheckpoint", "ContainerStopSignals", "CoordinatedLeaderElection",
        "CronJobsScheduledAnnotation", "CrossNamespaceVolumeDataSource", "CustomCPUCFSQuotaPeriod",
        "DRAAdminAccess", "DRAPrioritizedList", "DeclarativeValidation", "DeploymentReplicaSetTerminatingReplicas",
        "DevicePluginCDIDevices", "DisableAllocatorDualWrite", "DisableCloudProviders",
        "DisableKubeletCloudCredentialProviders", "DisableNodeKubeProxyVersion", "DynamicResourceAllocation",
        "ElasticIndexedJob", "EventedPLEG", "ExecProbeTimeout", "GracefulNodeShutdown",
        "GracefulNodeShutdownBasedOnPodPriority", "HPAConfigurableTolerance", "HPAContainerMetrics",
        "HPAScaleToZero", "HonorPVReclaimPolicy", "ImageMaximumGCAge", "ImageVolume", "InPlacePodVerticalScaling",
        "InPlacePodVerticalScalingAllocatedStatus", "InPlacePodVerticalScalingExclusiveCPUs",
        "InTreePluginPortworxUnregister", "JobBackoffLimitPerIndex", "JobManagedBy", "JobPodFailurePolicy",
        "JobPodReplacementPolicy", "JobSuccessPolicy", "KubeletCgroupDriverFromCRI", "KubeletCrashLoopBackOffMax",
        "KubeletFineGrainedAuthz", "KubeletInUserNamespace", "KubeletPodResourcesDynamicResources",
        "KubeletPodResourcesGet", "KubeletPodResourcesListUseActivePods", "KubeletRegistrationGetOnExistsOnly",
        "KubeletSeparateDiskGC", "KubeletTracing", "LocalStorageCapacityIsolationFSQuotaMonitoring",
        "LogarithmicScaleDown", "MatchLabelKeysInPodAffinity", "MatchLabelKeysInPodTopologySpread",
        "MaxUnavailableStatefulSet", "MemoryManager", "MemoryQoS", "NodeInclusionPolicyInPodTopologySpread",
        "NodeLogQuery", "NodeSwap", "OrderedNamespaceDeletion", "PDBUnhealthyPodEvictionPolicy",
        "PersistentVolumeLastPhaseTransitionTime", "PodAndContainerStatsFromCRI", "PodDeletionCost",
        "PodDisruptionConditions", "PodHostIPs", "PodIndexLabel", "PodLevelResources", "PodLifecycleSleepAction",
        "PodObservedGenerationTracking", "PodReadyToStartContainersCondition", "PodSchedulingReadiness",
        "PortForwardWebsockets", "PreferSameTrafficDistribution", "ProcMountType", "QOSReserved",
        "RecoverVolumeExpansionFailure", "RecursiveReadOnlyMounts", "RelaxedDNSSearchValidation",
        "RelaxedEnvironmentVariableValidation", "ReloadKubeletServerCertificateFile", "ResourceHealthStatus",
        "RotateKubeletServerCertificate", "RuntimeClassInImageCriApi", "SELinuxChangePolicy", "SELinuxMount",
        "SELinuxMountReadWriteOncePod", "SchedulerQueueingHints", "SeparateTaintEvictionController",
        "ServiceAccountNodeAudienceRestriction", "ServiceAccountTokenJTI", "ServiceAccountTokenNodeBinding",
        "ServiceAccountTokenNodeBindingValidation", "ServiceAccountTokenPodNodeInfo", "SidecarContainers",
        "SizeMemoryBackedVolumes", "StatefulSetAutoDeletePVC", "StatefulSetStartOrdinal", "StorageNamespaceIndex",
        "StorageVersionMigrator", "StrictIPCIDRValidation", "SupplementalGroupsPolicy", "SystemdWatchdog",
        "TopologyManagerPolicyAlphaOptions", "TopologyManagerPolicyBetaOptions", "TopologyManagerPolicyOptions",
        "TranslateStreamCloseWebsocketRequests", "UnknownVersionInteroperabilityProxy",
        "UserNamespacesPodSecurityStandards", "UserNamespacesSupport", "VolumeAttributesClass",
        "VolumeCapacityPriority", "WinDSR", "WinOverlay", "WindowsHostNetwork",
    ])

    /// Problems with a `featureGates` map: unknown names, locked gates set against their lock.
    public static func check(_ gates: [String: Bool]) -> [ConfigProblem] {
        var out: [ConfigProblem] = []
        for name in gates.keys.sorted() {
            let value = gates[name]!
            if !known.contains(name) {
                out.append(
                    .invalid(path: "featureGates.\(name)", reason: "unrecognized feature gate", got: "\"\(name)\""))
            } else if lockedOn.contains(name), !value {
                out.append(
                    .invalid(
                        path: "featureGates.\(name)",
                        reason: "cannot set feature gate \(name) to false, feature is locked to true",
                        got: "false"))
            }
        }
        return out
    }

    /// The `--feature-gates` help lines, one gate a line as kube-proxy's usage lists them.
    static var usage: String {
        known.sorted().map { lockedOn.contains($0) ? "\($0)=true (GA, locked)" : "\($0)=true|false" }.joined(
            separator: "\n")
    }
}
