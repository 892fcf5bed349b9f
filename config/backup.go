package config

import "time"

// StoreBackup has serve take backups of the store on a schedule: every
// Every, by one instance of a fleet at a time, into Dir, keeping the Keep
// newest.
type StoreBackup struct {
	// Every is the time between two backups; required, at least a second (hours in production).
	Every time.Duration `yaml:"every"`
	// Dir is where backup files are written; required. On a fleet, a
	// directory the instances share, or each keeps the backups it took.
	Dir string `yaml:"dir"`
	// Keep is how many backups are kept; older ones are removed. If zero,
	// DefaultBackupKeep.
	Keep int `yaml:"keep"`
	// KeyFile, when set, encrypts the backups with the key it holds
	// (gatekeeper store backup -new-key FILE).
	KeyFile string `yaml:"key_file"`
}

// DefaultBackupKeep is how many scheduled backups are kept by default.
const DefaultBackupKeep = 14

func (b *StoreBackup) validate(k *checker) {
	if b == nil {
		return
	}
	if b.Every < time.Second {
		k.add("store.backup.every", "%v: want a duration of at least 1s, such as 6h", b.Every)
	}
	if b.Dir == "" {
		k.add("store.backup.dir", "missing: the directory to write backups to")
	}
	if b.Keep < 1 {
		k.add("store.backup.keep", "%d: keep at least one backup", b.Keep)
	}
}
