require_relative "noop"
n = Integer(ARGV[0])
n.times.each_slice(1000) { |s| Sidekiq::Client.push_bulk("class" => NoopJob, "args" => s.map { [1, 2] }) }
