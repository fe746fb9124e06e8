import Foundation
import PQCore
import Testing

/// A plugin whose periodic jobs have good and bad schedules: the bad ones fail alone.
@Suite struct PeriodicPluginTests {
    static let source = """
        #include "pq_plugin.h"
        static void run(const pq_call *call) { call->complete(call, 1, "null"); }
        static const pq_job_def jobs[] = {
            { "p.good", "Every 5 s.", "{\\"run_every\\": 5, \\"anchor\\": \\"00:00:02\\", \\"kwargs\\": {\\"x\\": 1}}", run, NULL, NULL, NULL },
            { "p.cron", "Weekdays.", "{\\"cron\\": \\"30 9 * * mon-fri\\"}", run, NULL, NULL, NULL },
            { "p.badcron", "Bad.", "{\\"cron\\": \\"30 25 * * *\\"}", run, NULL, NULL, NULL },
            { "p.zero", "Bad.", "{\\"run_every\\": 0}", run, NULL, NULL, NULL },
        };
        static const pq_plugin plugin = { PQ_ABI_VERSION, sizeof(pq_plugin), "periodicfixture", "1.0.0", "c",
            sizeof jobs / sizeof jobs[0], jobs, NULL };
        const pq_plugin *pq_plugin_entry(uint32_t v) { return v == PQ_ABI_VERSION ? &plugin : NULL; }
        """

    @Test func aBadScheduleRejectsOnlyThatJob() async throws {
        let dir = Fixtures.temporaryDirectory("pqperiodicplugin")
        let path = try await Fixtures.compileC(Self.source, to: dir + "/libperiodic.so")
        let plugin = try PluginLoader().load(path: path)
        #expect(plugin.jobs.map(\.name) == ["p.good", "p.cron"])
        #expect(plugin.rejectedJobs.count == 2)
        #expect(plugin.rejectedJobs.contains { "\($0)".contains("p.badcron") && "\($0)".contains("hour value 25") })
        #expect(plugin.rejectedJobs.contains { "\($0)".contains("p.zero") && "\($0)".contains("run_every") })
        let good = try #require(plugin.jobs.first)
        #expect(good.options.schedule == .every(seconds: 5, anchor: 2))
        #expect(good.options.periodicKwargs == #"{"x":1}"#)
        #expect(plugin.jobs[1].options.schedule?.description == "cron 30 9 * * mon-fri")
    }
}
