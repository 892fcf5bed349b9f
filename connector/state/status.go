package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gatekeeper-dev/gatekeeper/connector"
)

// Status is what a running connector last saw, as written to StatusFile.
// Readers ignore fields they do not know, so later versions add fields
// without breaking older "connect status" commands.
type Status struct {
	// Service is the service name, or "" when run by hand.
	Service string `json:"service,omitempty"`
	// Server, ServerName and Listen are what the connector was told.
	Server     string `json:"server"`
	ServerName string `json:"server_name,omitempty"`
	Listen     string `json:"listen,omitempty"`
	// AdminURL is the admin page where an address is unblocked.
	AdminURL string `json:"admin_url,omitempty"`
	// PID is the connector's process.
	PID int `json:"pid"`
	// Started is when it started; Updated when this was written.
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	// State is the last outcome: "starting" (no connection yet),
	// "connected" (the gate let this computer through), "refused" (the
	// gate refused its address), "failing" (another failure: see
	// LastFailure), or "stopped".
	State string `json:"state"`
	// LastConnected is the last time the gate let this computer through.
	LastConnected *time.Time `json:"last_connected,omitempty"`
	// LastRefusal is the last time the gate refused this computer.
	LastRefusal *Refusal `json:"last_refusal,omitempty"`
	// LastFailure is the last failure of another kind.
	LastFailure *Failure `json:"last_failure,omitempty"`
	// Lease is this device's current lease, once devices exist: the
	// grant the admin listener made for the address it saw.
	Lease *Lease `json:"lease,omitempty"`
}

// States of Status.State.
const (
	StateStarting  = "starting"
	StateConnected = "connected"
	StateRefused   = "refused"
	StateFailing   = "failing"
	StateStopped   = "stopped"
)

// Refusal is the gate refusing this computer's address.
type Refusal struct {
	// First and Last bound a run of refusals with no success between;
	// Count is how many connections it refused in that run.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	Count int       `json:"count"`
	// Message is the connector's explanation, naming the admin page.
	Message string `json:"message"`
	// SeenAddr is this computer's address as gatekeeper saw it, when
	// gatekeeper said (a lease answer does); "" when unknown.
	SeenAddr string `json:"seen_addr,omitempty"`
}

// Failure is the last failure to reach the gate other than a refusal.
type Failure struct {
	At      time.Time `json:"at"`
	Cause   string    `json:"cause"`
	Message string    `json:"message"`
}

// Lease is a device lease: a grant for the address the admin listener saw.
type Lease struct {
	Rule      string    `json:"rule"`
	Addr      string    `json:"addr"`
	Device    string    `json:"device,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ReadStatus reads a status file.
func ReadStatus(path string) (Status, error) {
	var s Status
	b, err := os.ReadFile(path)
	if err != nil {
		return s, fmt.Errorf("read status: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("read status %s: %w", path, err)
	}
	return s, nil
}

// Report writes s for a person to read. now dates the times ("3m ago").
// The service's name and state are the service manager's to tell.
func (s Status) Report(w io.Writer, now time.Time) {
	ago := func(t time.Time) string {
		return fmt.Sprintf("%s (%s ago)", t.Local().Format("2006-01-02 15:04:05"), now.Sub(t).Round(time.Second))
	}
	fmt.Fprintf(w, "gatekeeper connect: %s, to %s", s.State, s.Server)
	if s.ServerName != "" {
		fmt.Fprintf(w, " (server name %s)", s.ServerName)
	}
	fmt.Fprintln(w)
	if s.Listen != "" {
		fmt.Fprintf(w, "  applications connect to  %s\n", s.Listen)
	}
	fmt.Fprintf(w, "  started                  %s, process %d\n", ago(s.Started), s.PID)
	fmt.Fprintf(w, "  status written           %s\n", ago(s.Updated))
	if s.LastConnected != nil {
		fmt.Fprintf(w, "  last let through         %s\n", ago(*s.LastConnected))
	} else {
		fmt.Fprintf(w, "  last let through         never since it started\n")
	}
	if r := s.LastRefusal; r != nil {
		fmt.Fprintf(w, "  last refused             %s", ago(r.Last))
		if r.Count > 1 {
			fmt.Fprintf(w, ", %d connections since %s", r.Count, r.First.Local().Format("2006-01-02 15:04:05"))
		}
		fmt.Fprintln(w)
		seen := r.SeenAddr
		if seen == "" {
			seen = "unknown (gatekeeper does not say; the admin page shows \"your IP\")"
		}
		fmt.Fprintf(w, "  address the gate saw     %s\n", seen)
		fmt.Fprintf(w, "  what to do               %s\n", r.Message)
	}
	if f := s.LastFailure; f != nil {
		fmt.Fprintf(w, "  last other failure       %s: %s\n", ago(f.At), f.Message)
	}
	if l := s.Lease; l != nil {
		fmt.Fprintf(w, "  lease                    %s for %s, expires %s\n", l.Rule, l.Addr, l.ExpiresAt.Local().Format("2006-01-02 15:04:05"))
	} else {
		fmt.Fprintf(w, "  lease                    none (one is asked for when the gate refuses this computer, if it has a device identity)\n")
	}
}

// Recorder keeps a status file up to date from a running connector's
// dial results (connector.Options.Dialed). It writes at once when the
// state changes, and otherwise at most once per Every, so an application
// retrying in a loop does not turn into a disk loop.
type Recorder struct {
	path  string
	every time.Duration
	now   func() time.Time
	log   *zap.Logger

	mu       sync.Mutex
	st       Status
	written  time.Time // when st was last written
	pending  bool      // st has changes not yet written
	warnedAt time.Time // last warning about a failed write
}

// DefaultEvery is how often a Recorder writes while the state stays the same.
const DefaultEvery = 30 * time.Second

// RecorderOptions configure a Recorder. Path is required.
type RecorderOptions struct {
	// Path is the status file.
	Path string
	// Every bounds how often an unchanged state is rewritten. If zero,
	// DefaultEvery.
	Every time.Duration
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// Logger hears about failed writes. If nil, nothing is logged.
	Logger *zap.Logger
}

// NewRecorder returns a Recorder that starts from base (its identifying
// fields: Service, Server, ServerName, Listen, AdminURL) and writes the
// "starting" state at once.
func NewRecorder(opts RecorderOptions, base Status) (*Recorder, error) {
	if opts.Path == "" {
		return nil, errors.New("status recorder: no path")
	}
	if opts.Every <= 0 {
		opts.Every = DefaultEvery
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	r := &Recorder{path: opts.Path, every: opts.Every, now: opts.Now, log: opts.Logger, st: base}
	now := r.now()
	r.st.PID = os.Getpid()
	r.st.Started = now
	r.st.State = StateStarting
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.writeLocked(now); err != nil {
		return nil, err
	}
	return r, nil
}

// Dialed records one attempt to reach the gate: nil when it let this
// computer through, else the connector's error.
func (r *Recorder) Dialed(err error) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	before := r.st.State
	switch {
	case err == nil:
		r.st.State = StateConnected
		r.st.LastConnected = &now
	case errors.Is(err, connector.ErrNotAllowed):
		r.st.State = StateRefused
		if r.st.LastRefusal == nil || before != StateRefused {
			// A new run of refusals; keep the address the gate saw, if
			// a lease told it, until something says otherwise.
			seen := ""
			if r.st.LastRefusal != nil {
				seen = r.st.LastRefusal.SeenAddr
			}
			r.st.LastRefusal = &Refusal{First: now, SeenAddr: seen}
		}
		r.st.LastRefusal.Last = now
		r.st.LastRefusal.Count++
		r.st.LastRefusal.Message = err.Error()
	default:
		r.st.State = StateFailing
		cause := "other"
		var de *connector.DialError
		if errors.As(err, &de) {
			cause = de.Cause.Error()
		}
		r.st.LastFailure = &Failure{At: now, Cause: cause, Message: err.Error()}
	}
	r.pending = true
	if r.st.State != before || now.Sub(r.written) >= r.every {
		r.flushLocked(now)
	}
}

// SetLease records the device's lease and the address the admin listener
// saw (for the devices feature).
func (r *Recorder) SetLease(l *Lease) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.Lease = l
	if l != nil && r.st.LastRefusal != nil {
		r.st.LastRefusal.SeenAddr = l.Addr
	}
	r.pending = true
	r.flushLocked(now)
}

// Stop writes the "stopped" state.
func (r *Recorder) Stop() {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.State = StateStopped
	r.pending = true
	r.flushLocked(now)
}

// Status returns what the recorder holds now.
func (r *Recorder) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

// flushLocked writes pending changes; a failure is logged (once per Every)
// and retried at the next change: the status file informs, it never stops
// the connector.
func (r *Recorder) flushLocked(now time.Time) {
	if !r.pending {
		return
	}
	if err := r.writeLocked(now); err != nil && now.Sub(r.warnedAt) >= r.every {
		r.warnedAt = now
		r.log.Warn("cannot write the status file; gatekeeper connect status will be out of date", zap.Error(err))
	}
}

func (r *Recorder) writeLocked(now time.Time) error {
	r.st.Updated = now
	b, err := json.MarshalIndent(r.st, "", "  ")
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if err := writeAtomic(r.path, append(b, '\n'), 0o644); err != nil {
		return err
	}
	r.written = now
	r.pending = false
	return nil
}
