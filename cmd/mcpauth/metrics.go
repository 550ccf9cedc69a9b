package main

import (
	"github.com/prometheus/client_golang/prometheus"

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
