import ArgumentParser
import Foundation
import Logging
import PQCore
import PQHTTP
import ServiceLifecycle
import UnixSignals

/// `--http` and `--http-token`, shared by `pq serve` and `pq web` (DESIGN.md section 11).
struct HTTPFlags: ParsableArguments {
    @Option(
        name: .customLong("http"),
        help: "Serve the HTTP API, dashboard and /metrics on HOST:PORT (env PQ_HTTP; pq.toml http).")
    var address: String?

    @Option(
        name: .customLong("http-token"),
        help:
            "Bearer token the HTTP API asks for; needed to listen beyond loopback (env PQ_HTTP_TOKEN; pq.toml http_token)."
    )
    var token: String?

    /// The HTTP options: flag, then env, then pq.toml; nil when no address is set and there is no default.
    func resolve(_ settings: Settings, defaultAddress: String? = nil) throws -> HTTPOptions? {
        let env = ProcessInfo.processInfo.environment
        guard
            let address = address ?? env["PQ_HTTP"].flatMap({ $0.isEmpty ? nil : $0 }) ?? settings.file.http
                ?? defaultAddress
        else {
            return nil
        }
        let token = token ?? env["PQ_HTTP_TOKEN"].flatMap { $0.isEmpty ? nil : $0 } ?? settings.file.httpToken
        do { return try HTTPOptions(address: address, token: token) } catch { throw CLIError("\(error)") }
    }
}

/// Prints where the HTTP face listens, on stderr as the log does (scripts and `make run` read it).
func announceHTTP(_ url: String, token: Bool) {
    printError("pq: dashboard and API on \(url)" + (token ? " (token required)" : ""))
}

extension PQ {
    /// `pq web`: the HTTP API, dashboard and metrics from the store alone, without a host.
    struct Web: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Serve the HTTP API, live dashboard and /metrics of a store (default http://127.0.0.1:5555/), without running tasks."
        )

        @OptionGroup var common: CommonOptions
        @OptionGroup var http: HTTPFlags

        func run() async throws {
            try await reportingErrors {
                let settings = try common.resolve()
                guard let options = try http.resolve(settings, defaultAddress: HTTPOptions.defaultAddress) else {
                    return
                }
                let logger = Logger(label: "pq")
                let store = try await settings.openStore()
                let server = HTTPServer(store: store, options: options, registry: nil, logger: logger) { url in
                    announceHTTP(url, token: options.token != nil)
                }
                let group = ServiceGroup(
                    configuration: .init(
                        services: [.init(service: server)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger
                    ))
                do { try await group.run() } catch {
                    await store.close()
                    throw CLIError("cannot serve HTTP on \(options.host):\(options.port): \(error)")
                }
                await store.close()
            }
        }
    }
}
