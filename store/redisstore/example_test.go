package redisstore_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
)

// An admin write and a proxy following it. It needs a Redis, so it is
// compiled but not run.
func Example() {
	ctx := context.Background()
	st, err := redisstore.Open(ctx, "redis://redis.internal:6379/0", redisstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()

	// A proxy loads everything, then follows from where the load was.
	d, err := st.LoadPolicy(ctx)
	if err != nil {
		log.Fatal(err) // errors.Is(err, policy.ErrUnavailable): serve the snapshot file
	}
	go st.Follow(ctx, d.Cursor, func(changes []policy.Change) {
		for _, c := range changes {
			fmt.Println("reload the policy of", c.Account)
		}
	})

	// A master adds a rule: the rule, its audit entry and the feed entry
	// commit together.
	err = st.Update(ctx, "10042", func(tx policy.Tx) error {
		r, err := tx.PutRule(policy.Rule{
			Prefix:    netip.MustParsePrefix("192.0.2.0/24"),
			Note:      "office",
			Source:    policy.SourceManual,
			CreatedBy: "master",
			CreatedAt: time.Now(),
		})
		if err != nil {
			return err
		}
		return tx.Audit(policy.AuditEntry{Actor: "master", Role: policy.RoleMaster, Action: "rule.add", Target: fmt.Sprint(r.ID)})
	})
	if err != nil {
		log.Fatal(err)
	}
}
