require "sidekiq"
Sidekiq.configure_server { |c| c.redis = { url: ENV["REDIS_URL"] } }
Sidekiq.configure_client { |c| c.redis = { url: ENV["REDIS_URL"] } }
class NoopJob
  include Sidekiq::Worker
  def perform(a, b); end
end
