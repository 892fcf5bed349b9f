//go:build !linux

package proxy

import (
	"errors"

	"go.uber.org/zap"
)

// watcher is written for Linux only (watcher_linux.go). Elsewhere an idle
// direction of a pipe waits in a goroutine of its own (half.resume) where
// waitReadable is written, and keeps its copy goroutine where it is not.
type watcher struct{}

type watchStats struct{ parked, woken, ended int }

func newWatcher(*zap.Logger) (*watcher, error) { return nil, errors.ErrUnsupported }

func (w *watcher) park(*half) bool          { return false }
func (w *watcher) claim(*half) bool         { return false }
func (w *watcher) count() (int, watchStats) { return 0, watchStats{} }
func (w *watcher) start()                   {}
func (w *watcher) close()                   {}
