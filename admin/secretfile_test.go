package admin

import (
	"bytes"
	"path/filepath"
	"sync"
	"testing"
)

// Instances of a fleet started together race to create the secrets key
// (and the operator token) when it does not exist yet: each must come up
// with the one key that was made, never read a file still being written
// (a bench run once saw the second instance refuse a key file that was
// still empty).
func TestSecretFileRace(t *testing.T) {
	for round := range 200 {
		path := filepath.Join(t.TempDir(), "secrets.key")
		const racers = 6
		keys := make([][]byte, racers)
		errs := make([]error, racers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range racers {
			wg.Go(func() {
				<-start
				keys[i], _, errs[i] = SecretsKey(path)
			})
		}
		close(start)
		wg.Wait()
		for i := range racers {
			if errs[i] != nil {
				t.Fatalf("round %d: racer %d: %v", round, i, errs[i])
			}
			if !bytes.Equal(keys[i], keys[0]) {
				t.Fatalf("round %d: racer %d read another key", round, i)
			}
		}
	}
}
