package admin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/policy"
)

// deviceCounts is the fleet's devices by status and its live leases.
type deviceCounts struct {
	byStatus map[policy.DeviceStatus]int
	leases   int
}

// deviceCollector exports gatekeeper_devices{status} and
// gatekeeper_device_leases_active. Devices live only in the store, so the
// counts come from reading every account there. A scrape never waits for
// that read: it gets the last counts, and starts a new read in the
// background when they are older than every. Before the first read ends
// the two metrics are absent rather than a false 0.
type deviceCollector struct {
	load    func(ctx context.Context) (deviceCounts, error)
	every   time.Duration
	timeout time.Duration
	now     func() time.Time
	log     *zap.Logger

	devices, leases *prometheus.Desc

	mu      sync.Mutex
	last    deviceCounts
	have    bool
	started time.Time // of the last read
	running bool
}

func newDeviceCollector(s *Service, every time.Duration) *deviceCollector {
	return &deviceCollector{
		load: s.countDevices, every: every, timeout: time.Minute, now: s.now, log: s.log,
		devices: prometheus.NewDesc("gatekeeper_devices",
			"Enrolled devices of all accounts, by status (pending, active, inactive), as last read from the store.",
			[]string{"status"}, nil),
		leases: prometheus.NewDesc("gatekeeper_device_leases_active",
			"Device leases (grants with source device) of all accounts that have not expired, as last read from the store.",
			nil, nil),
	}
}

func (c *deviceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.devices
	ch <- c.leases
}

func (c *deviceCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); !c.running && (!c.have || now.Sub(c.started) >= c.every) {
		c.running, c.started = true, now
		go c.refresh()
	}
	if !c.have {
		return
	}
	for _, st := range []policy.DeviceStatus{policy.DevicePending, policy.DeviceActive, policy.DeviceInactive} {
		ch <- prometheus.MustNewConstMetric(c.devices, prometheus.GaugeValue, float64(c.last.byStatus[st]), string(st))
	}
	ch <- prometheus.MustNewConstMetric(c.leases, prometheus.GaugeValue, float64(c.last.leases))
}

// refresh reads the counts; a failed read keeps the last ones.
func (c *deviceCollector) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	counts, err := c.load(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running = false
	if err != nil {
		c.log.Warn("could not count devices for gatekeeper_devices; keeping the last counts", zap.Error(err))
		return
	}
	c.last, c.have = counts, true
}

// countDevices reads every account's devices and live leases.
func (s *Service) countDevices(ctx context.Context) (deviceCounts, error) {
	accts, err := s.store.Accounts(ctx)
	if err != nil {
		return deviceCounts{}, fmt.Errorf("list accounts: %w", err)
	}
	out := deviceCounts{byStatus: map[policy.DeviceStatus]int{}}
	now := s.now()
	for _, a := range accts {
		err := s.store.View(ctx, a.ID, func(tx policy.Tx) error {
			ds, err := tx.Devices()
			if err != nil {
				return err
			}
			for _, d := range ds {
				out.byStatus[d.Status]++
			}
			rules, err := tx.Rules()
			for _, r := range rules {
				if r.Source == policy.SourceDevice && live(r, now) {
					out.leases++
				}
			}
			return err
		})
		if errors.Is(err, policy.ErrNotFound) {
			continue // deleted since the list
		}
		if err != nil {
			return deviceCounts{}, fmt.Errorf("count devices of %s: %w", a.ID, err)
		}
	}
	return out, nil
}
