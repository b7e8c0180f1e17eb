package serve

import (
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/spectraclip/spectraclip/internal/procstat"
	"github.com/spectraclip/spectraclip/torch"
)

// Metrics are the service's Prometheus metrics, on a registry of their own.
type Metrics struct {
	Registry *prometheus.Registry
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	batches  prometheus.Histogram
	forwards *prometheus.CounterVec
	stages   *prometheus.HistogramVec
}

func newMetrics(queueDepth func() float64, dev torch.Device) *Metrics {
	return newMetricsWorkers(queueDepth, dev, 1)
}

// newMetricsWorkers is newMetrics for a server with the given number of forward workers.
func newMetricsWorkers(queueDepth func() float64, dev torch.Device, workers int) *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spectraclip_serve_requests_total", Help: "scoring requests received, by protocol"}, []string{"protocol"})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spectraclip_serve_errors_total", Help: "failed scoring requests, by cause (queue_full, busy: the in-flight memory budget spent, deadline, canceled, bad_request, too_large, forbidden, shutting_down, not_ready, internal)"}, []string{"cause"})
	m.batches = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "spectraclip_serve_batch_size", Help: "frames per forward", Buckets: []float64{1, 2, 4, 8, 16, 32, 64}})
	m.stages = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "spectraclip_serve_stage_seconds", Help: "latency per stage (decode; copy into the batch; queue; forward; encode; total)",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"stage"})
	qd := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "spectraclip_serve_queue_depth", Help: "requests waiting in the queue"}, queueDepth)
	mem := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "spectraclip_serve_cpu_rss_bytes", Help: "resident set size of the process"}, func() float64 { return float64(rssBytes()) })
	heap := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "spectraclip_serve_go_heap_bytes", Help: "Go heap in use"}, func() float64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return float64(ms.HeapInuse)
	})
	m.forwards = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spectraclip_serve_forwards_total", Help: "forward passes, by worker"}, []string{"worker"})
	wk := prometheus.NewGauge(prometheus.GaugeOpts{Name: "spectraclip_serve_workers", Help: "forward workers (copies of the pipeline scoring batches at once)"})
	wk.Set(float64(workers))
	m.Registry.MustRegister(m.requests, m.errors, m.batches, m.stages, qd, mem, heap, wk, m.forwards,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// the caching CPU allocator: how much it holds, and how often a block was reused
	// (hits) or had to come fresh from the system (misses: page faults on first touch)
	alloc := func(i int) func() float64 {
		return func() float64 {
			c, h, mi, err := torch.AllocatorStats()
			if err != nil {
				return -1
			}
			return float64([]int64{c, h, mi}[i])
		}
	}
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "spectraclip_serve_cpu_allocator_cached_bytes", Help: "freed CPU tensor memory the caching allocator keeps for reuse"}, alloc(0)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "spectraclip_serve_cpu_allocator_hits_total", Help: "large CPU tensor allocations served from the caching allocator's free blocks"}, alloc(1)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "spectraclip_serve_cpu_allocator_misses_total", Help: "large CPU tensor allocations that took fresh memory from the system"}, alloc(2)))
	if dev.Type == torch.DeviceCUDA {
		for _, k := range []string{"allocated", "reserved"} {
			k := k
			m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "spectraclip_serve_gpu_" + k + "_bytes", Help: "CUDA caching allocator memory " + k}, func() float64 {
				a, r, _, err := torch.CUDAMemory(dev)
				if err != nil {
					return -1
				}
				if k == "allocated" {
					return float64(a)
				}
				return float64(r)
			}))
		}
	}
	return m
}

func (m *Metrics) request(proto string) {
	if m != nil {
		m.requests.WithLabelValues(proto).Inc()
	}
}

func (m *Metrics) error(cause string) {
	if m != nil && cause != "" {
		m.errors.WithLabelValues(cause).Inc()
	}
}

func (m *Metrics) stage(name string, d time.Duration) {
	if m != nil {
		m.stages.WithLabelValues(name).Observe(d.Seconds())
	}
}

// batch notes a forward of n frames by worker w.
func (m *Metrics) batch(w, n int) {
	if m != nil {
		m.batches.Observe(float64(n))
		m.forwards.WithLabelValues(strconv.Itoa(w)).Inc()
	}
}

// rssBytes is the process's resident set size (0 where /proc is missing).
func rssBytes() int64 { return int64(procstat.MB("VmRSS:") * (1 << 20)) }
