import Metrics
import Prometheus

/// A swift-metrics factory over a `PrometheusCollectorRegistry` that also writes `# HELP` lines.
///
/// swift-prometheus's own `PrometheusMetricsFactory` registers every metric with an empty help
/// text, and the registry refuses a second registration of a name with a different help, so help
/// cannot be added beside it. Upstream's exposition carries `# HELP ... [ALPHA] ...` lines that
/// operators read; this factory looks the help up by metric name and asks the registry directly.
struct HelpfulPrometheusFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry
    /// Help text per metric name.
    let help: [String: String]
    /// Histogram buckets per metric name (swift-metrics `Recorder(aggregate: true)`).
    let buckets: [String: [Double]]

    private func descriptor(_ name: String) -> MetricNameDescriptor {
        // An empty unit adds no suffix: the name is used as given.
        MetricNameDescriptor(metricName: name, unitName: "", helpText: self.help[name] ?? "")
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        self.registry.makeCounter(descriptor: self.descriptor(label), labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        self.registry.makeCounter(descriptor: self.descriptor(label), labels: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else {
            return self.registry.makeGauge(descriptor: self.descriptor(label), labels: dimensions)
        }
        return self.registry.makeValueHistogram(
            descriptor: self.descriptor(label), labels: dimensions, buckets: self.buckets[label] ?? [])
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        self.registry.makeGauge(descriptor: self.descriptor(label), labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        // The daemon records durations as seconds through Recorders; a Timer still works, in
        // seconds-valued buckets converted to Durations.
        let buckets = (self.buckets[label] ?? []).map { Duration.nanoseconds(Int64($0 * 1e9)) }
        return self.registry.makeDurationHistogram(
            descriptor: self.descriptor(label), labels: dimensions, buckets: buckets)
    }

    func destroyCounter(_ handler: any CounterHandler) {
        if let counter = handler as? Prometheus.Counter { self.registry.unregisterCounter(counter) }
    }

    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let counter = handler as? Prometheus.Counter { self.registry.unregisterCounter(counter) }
    }

    func destroyRecorder(_ handler: any RecorderHandler) {
        if let gauge = handler as? Prometheus.Gauge { self.registry.unregisterGauge(gauge) }
        if let histogram = handler as? ValueHistogram { self.registry.unregisterValueHistogram(histogram) }
    }

    func destroyMeter(_ handler: any MeterHandler) {
        if let gauge = handler as? Prometheus.Gauge { self.registry.unregisterGauge(gauge) }
    }

    func destroyTimer(_ handler: any TimerHandler) {
        if let histogram = handler as? DurationHistogram { self.registry.unregisterDurationHistogram(histogram) }
    }
}
