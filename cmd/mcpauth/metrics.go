package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpauth/mcpauth/resource/upstream"
	"github.com/mcpauth/mcpauth/storage"
)

var (
	poolAcquired = prometheus.NewDesc("mcpauth_db_pool_acquired_connections", "Connections in use.", nil, nil)
	poolIdle     = prometheus.NewDesc("mcpauth_db_pool_idle_connections", "Idle connections.", nil, nil)
	poolTotal    = prometheus.NewDesc("mcpauth_db_pool_connections", "Open connections.", nil, nil)
	poolMax      = prometheus.NewDesc("mcpauth_db_pool_max_connections", "Pool size limit.", nil, nil)
	poolAcquires = prometheus.NewDesc("mcpauth_db_pool_acquires_total", "Successful connection acquisitions.", nil, nil)
	poolWaits    = prometheus.NewDesc("mcpauth_db_pool_empty_acquires_total", "Acquisitions that had to wait for a connection.", nil, nil)
	poolWait     = prometheus.NewDesc("mcpauth_db_pool_acquire_wait_seconds_total", "Time spent acquiring connections.", nil, nil)
	poolCanceled = prometheus.NewDesc("mcpauth_db_pool_canceled_acquires_total", "Acquisitions canceled by their context.", nil, nil)
)

// poolCollector exports the PostgreSQL pool's statistics at scrape time.
type poolCollector struct{ db *storage.DB }

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolAcquired, poolIdle, poolTotal, poolMax, poolAcquires, poolWaits, poolWait, poolCanceled} {
		ch <- d
	}
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.db.Stat()
	ch <- prometheus.MustNewConstMetric(poolAcquired, prometheus.GaugeValue, float64(s.AcquiredConns()))
	ch <- prometheus.MustNewConstMetric(poolIdle, prometheus.GaugeValue, float64(s.IdleConns()))
	ch <- prometheus.MustNewConstMetric(poolTotal, prometheus.GaugeValue, float64(s.TotalConns()))
	ch <- prometheus.MustNewConstMetric(poolMax, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(poolAcquires, prometheus.CounterValue, float64(s.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolWaits, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolWait, prometheus.CounterValue, s.AcquireDuration().Seconds())
	ch <- prometheus.MustNewConstMetric(poolCanceled, prometheus.CounterValue, float64(s.CanceledAcquireCount()))
}

var (
	descUpstreamUp       = prometheus.NewDesc("mcpauth_upstream_up", "1 when the upstream MCP server is connected with its tools mounted, else 0.", []string{"upstream"}, nil)
	descUpstreamTools    = prometheus.NewDesc("mcpauth_upstream_tools", "Tools of the upstream mounted and visible on /mcp.", []string{"upstream"}, nil)
	descUpstreamRestarts = prometheus.NewDesc("mcpauth_upstream_restarts_total", "Connections to the upstream lost or failed (each followed by a restart).", []string{"upstream"}, nil)
)

// upstreamMetrics records the upstream MCP servers' tool calls (it is their
// upstream.Observer) and exports their state at scrape time. Labels stay
// bounded: upstream names come from the configuration, tool names are
// capped per upstream by the upstream package (upstream.MaxToolLabels), and
// outcomes are a fixed set.
type upstreamMetrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	status   func() []upstream.Status // set once the manager exists
}

func newUpstreamMetrics() *upstreamMetrics {
	return &upstreamMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpauth_upstream_calls_total",
			Help: "tools/call requests proxied to upstream MCP servers, by upstream, tool and outcome (ok, tool_error, error, unavailable, timeout, cancelled, too_large).",
		}, []string{"upstream", "tool", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mcpauth_upstream_call_duration_seconds",
			Help:    "Latency of tools/call requests proxied to upstream MCP servers, by upstream and tool.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"upstream", "tool"}),
	}
}

var _ upstream.Observer = (*upstreamMetrics)(nil)

func (m *upstreamMetrics) ObserveCall(up, tool, outcome string, d time.Duration) {
	m.calls.WithLabelValues(up, tool, outcome).Inc()
	m.duration.WithLabelValues(up, tool).Observe(d.Seconds())
}

func (m *upstreamMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.calls.Describe(ch)
	m.duration.Describe(ch)
	ch <- descUpstreamUp
	ch <- descUpstreamTools
	ch <- descUpstreamRestarts
}

func (m *upstreamMetrics) Collect(ch chan<- prometheus.Metric) {
	m.calls.Collect(ch)
	m.duration.Collect(ch)
	if m.status == nil {
		return
	}
	for _, s := range m.status() {
		up := 0.0
		if s.State == upstream.StateUp {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUpstreamUp, prometheus.GaugeValue, up, s.Name)
		ch <- prometheus.MustNewConstMetric(descUpstreamTools, prometheus.GaugeValue, float64(s.Tools), s.Name)
		ch <- prometheus.MustNewConstMetric(descUpstreamRestarts, prometheus.CounterValue, float64(s.Restarts), s.Name)
	}
}
