package server

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics holds the Prometheus counters of object reads, writes and
// deletes, labelled by user, repository and object type, in a registry of
// its own (so several handlers can coexist in one process).
type metrics struct {
	handler http.Handler

	readTotal, readBytes     *prometheus.CounterVec
	writeTotal, writeBytes   *prometheus.CounterVec
	deleteTotal, deleteBytes *prometheus.CounterVec
}

func newMetrics() (*metrics, error) {
	labels := []string{"user", "repo", "type"}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m := &metrics{
		readTotal:   counter("rest_server_blob_read_total", "Total number of objects read"),
		readBytes:   counter("rest_server_blob_read_bytes_total", "Total number of bytes read from objects"),
		writeTotal:  counter("rest_server_blob_write_total", "Total number of objects written"),
		writeBytes:  counter("rest_server_blob_write_bytes_total", "Total number of bytes written to objects"),
		deleteTotal: counter("rest_server_blob_delete_total", "Total number of objects deleted"),
		deleteBytes: counter("rest_server_blob_delete_bytes_total", "Total number of bytes of deleted objects"),
	}
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		m.readTotal, m.readBytes, m.writeTotal, m.writeBytes, m.deleteTotal, m.deleteBytes,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return m, nil
}

func (m *metrics) labels(info *reqInfo, rt route) prometheus.Labels {
	return prometheus.Labels{"user": info.user, "repo": rt.repoPath(), "type": rt.ftype.String()}
}

func (m *metrics) read(info *reqInfo, rt route, n int64) {
	l := m.labels(info, rt)
	m.readTotal.With(l).Inc()
	m.readBytes.With(l).Add(float64(n))
}

func (m *metrics) write(info *reqInfo, rt route, n int64) {
	l := m.labels(info, rt)
	m.writeTotal.With(l).Inc()
	m.writeBytes.With(l).Add(float64(n))
}

func (m *metrics) delete(info *reqInfo, rt route, n int64) {
	l := m.labels(info, rt)
	m.deleteTotal.With(l).Inc()
	m.deleteBytes.With(l).Add(float64(n))
}
