import Foundation
import KubeModel

/// The kinds of object the apiserver source follows, with where and how they are listed.
public enum ResourceKind: String, Sendable, Hashable, CustomStringConvertible {
    case service = "Service"
    case endpointSlice = "EndpointSlice"
    /// v1 Endpoints: followed instead of EndpointSlices only when the apiserver has no
    /// discovery.k8s.io/v1 (404), so exactly one of the two is ever emitted.
    case endpoints = "Endpoints"

    public var description: String { rawValue }

    /// The cluster-wide collection path.
    public var path: String {
        switch self {
        case .service: "/api/v1/services"
        case .endpointSlice: "/apis/discovery.k8s.io/v1/endpointslices"
        case .endpoints: "/api/v1/endpoints"
        }
    }

    /// kube-proxy builds one informer factory with `!service.kubernetes.io/service-proxy-name`
    /// (objects another proxy owns) and `!service.kubernetes.io/headless` (set by the endpoint
    /// controllers on headless Services' endpoints) and uses it for Services and EndpointSlices
    /// alike (cmd/kube-proxy/app/server.go); we send the same selector for every kind so the
    /// apiserver filters exactly what upstream's informers would. labels.Selector sorts by key.
    public static let labelSelector = "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name"
}

/// One change from the apiserver, in the order the consumer must apply them.
///
/// Every list (the first one and each relist after a 410 Gone or, in polling mode, the first
/// poll) arrives as `.replaceAll`: objects of that kind not in it are gone. `.synced` follows the
/// first `.replaceAll` of a kind, once.
public enum SourceEvent<Object: Sendable>: Sendable {
    case replaceAll(ResourceKind, [Object])
    case synced(ResourceKind)
    case upsert(ResourceKind, Object)
    case delete(ResourceKind, ObjectName)
    /// This node's Node as first seen and after every change of what it holds (labels, taints, deletion,
    /// addresses, podCIDRs); nil when it was deleted.
    case node(Node?)
}

/// Turns one object (as `JSONTree` parsed it) into the consumer's value; a throw skips that
/// object and is logged with its name, the watch goes on.
public typealias SourceObjectDecoder<Object> = @Sendable (ResourceKind, JSONObject) throws -> Object

/// How the source talks to the apiserver.
public struct SourceOptions: Sendable {
    /// Watch (list, then watch with bookmarks), or poll (list every interval, emit differences).
    public enum Mode: Sendable, Equatable {
        case watch
        case poll(interval: Duration)
    }

    public var mode: Mode = .watch
    /// This node's name: its Node object is listed and watched by name (a `metadata.name` field selector, as
    /// upstream's node informer). nil: not followed.
    public var nodeName: String?
    /// `limit` of each page of a list that is paginated: client-go's pager default. Lists from a given
    /// resourceVersion after a watch expired are not paginated, so the watch cache can serve them (as client-go).
    public var pageSize: Int = 500
    /// `timeoutSeconds` of a watch is random in [min, 2*min), as client-go's reflector picks it,
    /// so that the node's watches do not all end together.
    public var minWatchTimeout: Duration = .seconds(300)
    /// A connection silent for the longest possible `timeoutSeconds` plus this is considered stalled.
    public var watchStallGrace: Duration = .seconds(30)
    /// Deadline of a single list page or discovery request.
    public var requestTimeout: Duration = .seconds(60)
    /// Pacing of retries after failures, and of relists after a watch expired (client-go's reflector backoff).
    public var backoff = BackoffPolicy()
    /// `clientConnection.qps` / `burst`: the client-side token bucket in front of every request (list and watch).
    public var qps: Double = 5
    public var burst: Int = 10
    /// A limiter to use instead of one made from `qps`/`burst` (several sources sharing one, or a test counting).
    public var rateLimiter: RequestRateLimiter?
    /// Time, sleeps and jitter; `.live` but in tests.
    public var timing: SourceTiming = .live
    /// Told of every request to the apiserver once its outcome is known (metrics).
    public var onRequest: APIRequestObserver?

    public init(mode: Mode = .watch, nodeName: String? = nil) {
        self.mode = mode
        self.nodeName = nodeName
    }
}

/// One request to the apiserver: the resource (`services`, `endpointslices`, `endpoints`, `nodes`, `discovery`), the
/// verb (`list`, `watch`, `get`) and the HTTP status code, or `<error>` when none came back (client-go's
/// `rest_client_requests_total` spells a transport failure the same way).
public typealias APIRequestObserver = @Sendable (_ resource: String, _ verb: String, _ code: String) -> Void
