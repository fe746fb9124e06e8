import CoreMetrics
import PQCore
public import Prometheus

/// `GET /metrics`: the Prometheus text format (version 0.0.4).
///
/// The queue and host gauges are read from the store at each scrape (every HTTP face has them,
/// `pq web` too); the host's own counters and histograms (``PQCore`` reports them through
/// swift-metrics) come from the registry the process bootstrapped, when it runs a host.
struct MetricsText {
    let reads: API.SharedReads
    let registry: PrometheusCollectorRegistry?

    func render(subscribers: Int) async throws -> String {
        let hostWindow = API.SharedReads.hostWindow
        let sizes = try await reads.queues.get()
        let hosts = try await reads.hosts.get()
        var out = ""
        out +=
            "# HELP pq_queue_tasks Tasks of a queue by state (queued: ready to run; delayed: waiting for their time; retry: waiting to run again; started: running).\n"
        out += "# TYPE pq_queue_tasks gauge\n"
        for size in sizes {
            let queue = Self.escape(size.queue)
            for (state, n) in [
                ("queued", size.queued), ("delayed", size.delayed), ("retry", size.retry), ("started", size.started),
            ] {
                out += "pq_queue_tasks{queue=\"\(queue)\",state=\"\(state)\"} \(n)\n"
            }
        }
        out += "# HELP pq_hosts Hosts that published a status in the last \(Int(hostWindow)) s.\n"
        out += "# TYPE pq_hosts gauge\n"
        out += "pq_hosts \(hosts.count)\n"
        out += "# HELP pq_http_event_subscribers Clients following GET /api/events on this process.\n"
        out += "# TYPE pq_http_event_subscribers gauge\n"
        out += "pq_http_event_subscribers \(subscribers)\n"
        if let registry {
            var bytes: [UInt8] = []
            registry.emit(into: &bytes)
            out += String(decoding: bytes, as: UTF8.self)
        }
        return out
    }

    /// A label value as the text format wants it: backslash, quote and newline escaped.
    static func escape(_ value: String) -> String {
        var out = ""
        for c in value.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}

/// The process's Prometheus registry behind swift-metrics: bootstrapped once, on first use.
public enum HostMetricsExport {
    /// The registry `pq serve --http` exports; making it bootstraps swift-metrics with it.
    public static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5),
            .seconds(10), .seconds(30), .seconds(60), .seconds(300),
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }()
}
