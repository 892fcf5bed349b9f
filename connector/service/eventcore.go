package service

import (
	"errors"
	"strings"

	"go.uber.org/zap/zapcore"

	"github.com/gatekeeper-dev/gatekeeper/connector"
)

// Event IDs the connector writes to the Windows Event Log (source: the
// service name, log: Application). The message file registered with them
// (EventCreate.exe's) takes IDs 1 to 1000.
const (
	EventInfo       = 1  // started, stopped
	EventWarning    = 2  // a warning of the log
	EventError      = 3  // an error of the log: gatekeeper down, certificate, timeout…
	EventNotAllowed = 10 // the gate refused this computer's address: unblock it
)

// EventWriter is where EventCore writes: *eventlog.Log on Windows.
type EventWriter interface {
	Info(eid uint32, msg string) error
	Warning(eid uint32, msg string) error
	Error(eid uint32, msg string) error
}

// EventCore is a zap core that writes warnings and errors to an event log
// (debug and info stay in the log file: the Event Log is for what a person
// must act on). The connector's failures come once per cause per 30
// seconds (connector.Options.Logger), so a retrying application does not
// flood it. A refusal of this computer's address gets EventNotAllowed, so
// that it can be filtered for and its message names the admin page.
type EventCore struct {
	zapcore.LevelEnabler
	w      EventWriter
	enc    zapcore.Encoder
	fields []zapcore.Field
}

var _ zapcore.Core = (*EventCore)(nil)

// NewEventCore returns an EventCore writing to w.
func NewEventCore(w EventWriter) *EventCore {
	ec := zapcore.EncoderConfig{MessageKey: "", ConsoleSeparator: "  "}
	return &EventCore{LevelEnabler: zapcore.WarnLevel, w: w, enc: zapcore.NewConsoleEncoder(ec)}
}

func (c *EventCore) With(fields []zapcore.Field) zapcore.Core {
	clone := *c
	clone.fields = append(append([]zapcore.Field(nil), c.fields...), fields...)
	return &clone
}

func (c *EventCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *EventCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	all := append(append([]zapcore.Field(nil), c.fields...), fields...)
	msg := e.Message
	if buf, err := c.enc.EncodeEntry(zapcore.Entry{}, all); err == nil {
		if extra := strings.TrimSpace(buf.String()); extra != "" {
			msg += "\r\n\r\n" + extra
		}
		buf.Free()
	}
	switch {
	case notAllowed(all):
		return c.w.Error(EventNotAllowed, msg)
	case e.Level >= zapcore.ErrorLevel:
		return c.w.Error(EventError, msg)
	}
	return c.w.Warning(EventWarning, msg)
}

func (c *EventCore) Sync() error { return nil }

// notAllowed reports whether an error field says the gate refused this
// computer (connector.ErrNotAllowed).
func notAllowed(fields []zapcore.Field) bool {
	for _, f := range fields {
		if err, ok := f.Interface.(error); ok && f.Type == zapcore.ErrorType && errors.Is(err, connector.ErrNotAllowed) {
			return true
		}
	}
	return false
}
