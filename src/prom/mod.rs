//! Prometheus text exposition parsing and the server-metrics poller.
