package e2e

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gatekeeper-dev/gatekeeper/policy"
	"github.com/gatekeeper-dev/gatekeeper/store/redisstore"
	"github.com/gatekeeper-dev/gatekeeper/store/redistest"
)

// receipt is the part of an offboarding receipt these tests read.
type receipt struct {
	At            time.Time `json:"at"`
	By            string    `json:"by"`
	DueAt         time.Time `json:"due_at"`
	LateSeconds   float64   `json:"late_seconds"`
	SessionsEnded int       `json:"sessions_ended"`
	Grants        []struct {
		CIDR string `json:"cidr"`
	} `json:"grants_revoked"`
	ConnectionsClosed *int `json:"connections_closed"`
}

// employee creates user name on the master's instance and returns their
// session, logged in from ip with their own password, and their address
// unblocked.
func employee(t *testing.T, m *adminClient, adminAddr, ip, name string, body map[string]any) *adminClient {
	t.Helper()
	const initial, own = "first-day-password-1", "my-own-password-2026"
	body["username"], body["password"] = name, initial
	if code, b, _ := m.call("POST", "/api/v1/accounts/acct/users", body); code != http.StatusCreated {
		t.Fatalf("create %s: %d %s", name, code, b)
	}
	code, b, _ := newAdminFrom(ip, adminAddr, "").call("POST", "/api/v1/login",
		map[string]string{"account": "acct", "username": name, "password": initial})
	var l struct{ Token string }
	if code != http.StatusOK || json.Unmarshal(b, &l) != nil {
		t.Fatalf("login %s: %d %s", name, code, b)
	}
	u := newAdminFrom(ip, adminAddr, l.Token)
	if code, b, _ := u.call("POST", "/api/v1/password", map[string]string{"current": initial, "new": own}); code != http.StatusOK {
		t.Fatalf("password of %s: %d %s", name, code, b)
	}
	if code, b, _ := u.call("POST", "/api/v1/accounts/acct/unblock", nil); code != http.StatusCreated {
		t.Fatalf("unblock %s: %d %s", name, code, b)
	}
	return u
}

// liveThrough opens a connection from ip through the gate, once the grant
// has reached the instance, and checks it carries data.
func liveThrough(t *testing.T, ip, gate string) *net.TCPConn {
	t.Helper()
	var c *net.TCPConn
	waitFor(t, 10*time.Second, "a live connection through the gate from "+ip, func() bool {
		var err error
		if c, err = dialFrom(ip, gate); err != nil {
			return false
		}
		if roundTrip(c, "hello") != nil {
			c.Close()
			return false
		}
		return true
	})
	return c
}

// closedAt reads from c until it closes and returns when it did.
func closedAt(t *testing.T, c net.Conn, within time.Duration) time.Time {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 16)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the connection is still open %v later", within)
		}
		return time.Now()
	}
}

func (a *adminClient) receipt(t *testing.T, name string) (receipt, int) {
	t.Helper()
	code, b, _ := a.call("GET", "/api/v1/accounts/acct/users/"+name+"/offboarding", nil)
	var r receipt
	if code == http.StatusOK {
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("receipt %s: %v", b, err)
		}
	}
	return r, code
}

// offboardEntries counts the account's user.offboard audit entries.
func (a *adminClient) offboardEntries(t *testing.T, name string) int {
	t.Helper()
	code, b, _ := a.call("GET", "/api/v1/accounts/acct/audit?limit=1000&user="+name, nil)
	var page struct {
		Entries []struct{ Action string } `json:"entries"`
	}
	if code != http.StatusOK || json.Unmarshal(b, &page) != nil {
		t.Fatalf("audit: %d %s", code, b)
	}
	n := 0
	for _, e := range page.Entries {
		if e.Action == "user.offboard" {
			n++
		}
	}
	return n
}

// TestLastDayFleet: two instances on one Redis; an employee whose last day
// is three seconds ahead has a live connection through the gate. At that
// instant their session ends, their grant is revoked and the connection
// closes, by itself, once in the fleet: one audit entry, one receipt.
func TestLastDayFleet(t *testing.T) {
	rs := redistest.Start(t)
	up := echoServer(t)
	a, b := startInstance(t, rs.URL(), up), startInstance(t, rs.URL(), up)
	m := createAccount(t, a.admin, "acct", "studio-master-password")
	const ip = "127.0.0.17"
	u := employee(t, m, a.admin, ip, "jsmith", map[string]any{})
	live := liveThrough(t, ip, b.db) // through the instance that did not set it
	defer live.Close()

	// Set through A, and the same again through B (a change of nothing,
	// but it tells B now rather than at its next scan): both instances
	// wait for the same instant.
	due := time.Now().Add(3 * time.Second).In(time.FixedZone("PST", -8*3600))
	for _, in := range []*instance{a, b} {
		if code, body, _ := m.on(in.admin).call("PATCH", "/api/v1/accounts/acct/users/jsmith",
			map[string]string{"access_until": due.Format(time.RFC3339Nano)}); code != http.StatusOK {
			t.Fatalf("set the last day: %d %s", code, body)
		}
	}
	closed := closedAt(t, live, 30*time.Second)
	t.Logf("the live connection closed %v after the last day's instant", closed.Sub(due))
	var rec receipt
	waitFor(t, 10*time.Second, "the receipt", func() bool {
		var code int
		rec, code = m.on(b.admin).receipt(t, "jsmith")
		return code == http.StatusOK
	})
	t.Logf("receipt: ran at %v, %.3f s after the instant; %d session(s) ended", rec.At, rec.LateSeconds, rec.SessionsEnded)
	if rec.By != "schedule" || !rec.DueAt.Equal(due) || rec.SessionsEnded < 1 || len(rec.Grants) != 1 ||
		rec.Grants[0].CIDR != ip+"/32" || rec.At.Before(due) {
		t.Fatalf("receipt %+v", rec)
	}
	if code, _, _ := u.call("GET", "/api/v1/me", nil); code != http.StatusUnauthorized {
		t.Errorf("the employee's session answers %d after their last day", code)
	}
	waitFor(t, 10*time.Second, "both instances to refuse the employee's address", func() bool {
		return !through(ip, a.db) && !through(ip, b.db)
	})
	if n := m.offboardEntries(t, "jsmith"); n != 1 {
		t.Fatalf("%d offboarding entries, want 1", n)
	}
}

// TestLastDayAfterRestart: a gatekeeper stopped across an employee's last
// day runs it when it starts again, and the receipt says how late. The
// last day is written into the store while the instance is stopped, so
// that how long stopping takes cannot decide what the test shows.
func TestLastDayAfterRestart(t *testing.T) {
	rs := redistest.Start(t)
	in := startInstance(t, rs.URL(), echoServer(t))
	m := createAccount(t, in.admin, "acct", "studio-master-password")
	employee(t, m, in.admin, "127.0.0.18", "temp.worker", map[string]any{})
	if err := in.stop(40 * time.Second); err != nil {
		t.Logf("stop: %v", err)
	}
	st, err := redisstore.Open(t.Context(), rs.URL(), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	due := time.Now().Add(500 * time.Millisecond).Truncate(time.Millisecond)
	err = st.Update(t.Context(), "acct", func(tx policy.Tx) error {
		u, err := tx.User("temp.worker")
		if err != nil {
			return err
		}
		u.AccessUntil = due
		return tx.PutUser(u)
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the last day to pass with gatekeeper stopped", func() bool { return time.Now().After(due.Add(time.Second)) })
	in.spawn()
	in.waitReady()
	var rec receipt
	waitFor(t, 20*time.Second, "the receipt after the restart", func() bool {
		var code int
		rec, code = login(t, in.admin, "acct", "studio-master-password").receipt(t, "temp.worker")
		return code == http.StatusOK
	})
	t.Logf("ran %.3f s after the instant, having been stopped across it", rec.LateSeconds)
	if rec.By != "schedule" || rec.LateSeconds < 1 || !rec.DueAt.Equal(due) || len(rec.Grants) != 1 {
		t.Fatalf("receipt %+v", rec)
	}
}
