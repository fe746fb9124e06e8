// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "pq",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "pq", targets: ["pq"]),
        .library(name: "PQKit", targets: ["PQKit"]),
        .library(name: "PQCore", targets: ["PQCore"]),
        .library(name: "PQRedis", targets: ["PQRedis"]),
        // Example plugins: each is its own shared library, loaded by the host with dlopen.
        .library(name: "pq_examples", type: .dynamic, targets: ["ExampleJobs"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        // pq.toml and NAME.pq.toml manifests (toml++ underneath).
        .package(url: "https://github.com/LebJe/TOMLKit", exact: "0.6.0"),
        // `swift package generate-documentation --target PQKit`: the plugin SDK's reference.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
    ],
    targets: [
        // The plugin ABI: one C header, nothing else.
        .target(name: "CPQPlugin"),
        // Linux calls of the worker processes (eventfd, memfd, parent-death signal).
        .target(name: "CPQSystem"),
        // The compiler version string, shared by the host and the SDK.
        .target(name: "PQToolchain", swiftSettings: swiftSettings),
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite"),
        // libffi, for calling typed jobs (plain C functions).
        .systemLibrary(name: "CFFI", path: "Sources/CFFI"),
        .target(
            name: "PQKit",
            dependencies: ["CPQPlugin", "PQToolchain"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "PQCore",
            dependencies: [
                "CPQPlugin",
                "CPQSystem",
                "PQToolchain",
                "CSQLite",
                "CFFI",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            swiftSettings: swiftSettings
        ),
        // The HTTP face (DESIGN.md section 11): the API, the dashboard, /metrics; on Hummingbird 2.
        .target(
            name: "PQHTTP",
            dependencies: [
                "PQCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The Redis store: a small RESP client on SwiftNIO (TLS through swift-nio-ssl) and a TaskStore over it.
        .target(
            name: "PQRedis",
            dependencies: [
                "PQCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "pq",
            dependencies: [
                "PQCore",
                "PQRedis",
                "PQHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "pq-bench",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                "PQCore",
                "CPQPlugin",
                "PQRedis",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ExampleJobs",
            dependencies: ["PQKit"],
            path: "Plugins/examples-swift",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PQCoreTests",
            dependencies: ["PQCore", "PQRedis", "CPQPlugin"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PQRedisTests",
            dependencies: [
                "PQRedis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PQHTTPTests",
            dependencies: [
                "PQHTTP",
                "PQCore",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PQKitTests",
            dependencies: ["PQKit", "CPQPlugin", "PQToolchain"],
            swiftSettings: swiftSettings
        ),
    ]
)
