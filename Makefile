# pq — thin wrapper over SwiftPM; logic lives in scripts/ and Swift.
CONFIG ?= release
PLUGINS_ROOT ?= $(CURDIR)/.pq/plugins
SWIFT_FLAGS ?=
BIN := $(shell swift build -c $(CONFIG) --show-bin-path 2>/dev/null)

.PHONY: build plugins test run bench format lint docs clean

## build: bin/pq and the example plugins, installed under $(PLUGINS_ROOT) (task_paths examples.*)
build:
	swift build -c $(CONFIG) $(SWIFT_FLAGS)
	mkdir -p bin
	ln -sf "$(BIN)/pq" bin/pq
	scripts/install-plugins.sh "$(BIN)" "$(PLUGINS_ROOT)"

## plugins: only the example plugins
plugins:
	swift build -c $(CONFIG) --product pq_examples $(SWIFT_FLAGS)
	scripts/install-plugins.sh "$(BIN)" "$(PLUGINS_ROOT)"

## test: everything `swift test` checks, against the built bin/pq and plugins and a private redis-server; end-to-end suites in both isolation modes
test: build
	scripts/with-redis.sh swift test --no-parallel $(SWIFT_FLAGS)
	# The end-to-end suites again, with every host in thread mode (process mode is the default).
	PQ_TEST_ISOLATION=thread scripts/with-redis.sh swift test --no-parallel --filter "EndToEnd|HotReload" --skip IsolationEndToEnd $(SWIFT_FLAGS)

## run: the demo, a host on the embedded store with the example plugins
run: build
	scripts/demo.sh

## bench: figures (load time, pq jobs time, tasks/s, latency)
bench: build
	scripts/with-redis.sh scripts/bench.sh

format:
	swift format --in-place --recursive Sources Tests Plugins Package.swift

## lint: the style check CI runs (.swift-format); `make format` fixes what it reports
lint:
	swift format lint --strict --recursive Sources Tests Plugins Package.swift

## docs: PQKit's reference (DocC); warnings fail it
docs:
	swift package generate-documentation --target PQKit --warnings-as-errors

clean:
	rm -rf .build bin .pq
