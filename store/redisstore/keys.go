package redisstore

import "strconv"

// Key layout. Every key of one account carries its shard's hash tag
// {gk:NN}, so on a Cluster they share a slot with each other and with the
// shard's change feed: a write, its audit entry and its feed entry can then
// be one MULTI/EXEC. A fixed number of shards, rather than a feed per
// account, keeps the number of streams a follower reads small and fixed.
//
//	gk:meta                          hash: generation, created_at
//	gk:{gk:NN}:accounts              set of the shard's account IDs
//	gk:{gk:NN}:feed                  stream of changes: a (account), s (seq), t (unix ms)
//	gk:{gk:NN}:seq                   the shard's last feed seq
//	gk:{gk:NN}:acct:ID               string: account JSON
//	gk:{gk:NN}:rules:ID              hash: rule ID -> binary rule (see codec.go)
//	gk:{gk:NN}:ruleid:ID             string: last rule ID handed out
//	gk:{gk:NN}:users:ID              hash: username -> user JSON
//	gk:{gk:NN}:devices:ID            hash: device ID -> device JSON
//	gk:{gk:NN}:enrol:ID              hash: code hash -> enrolment code JSON
//	gk:{gk:NN}:requests:ID           hash: access request ID -> access request JSON
//	gk:{gk:NN}:usage:ID              hash: "RULE:h" -> hits, "RULE:l" -> last use (unix ms)
//	gk:{gk:NN}:sess:ID:HASH          string: session JSON, expiring with the session
//	gk:{gk:NN}:usess:ID:USER         set of a user's session hashes ("" user: the master)
//	gk:{gk:NN}:audit:ID              stream of audit entries: e -> entry JSON
//	gk:{gk:NN}:outbox:ID             hash: audit entry ID -> outbox entry JSON (IDs left out)
//	gk:{gk:NN}:outboxed              set of the shard's account IDs with an outbox entry
//	gk:{gk:NN}:nstatus:ID            hash: destination key -> last delivery attempt JSON
//	gk:{gk:NN}:lastdays              sorted set: ACCOUNT "\x00" USER, scored by last day (unix ms; lastdays.go)
//	gk:{gk:NN}:reviews               sorted set: ACCOUNT [ "\x00noted" ], scored by review due (unix ms; reviews.go)
//	gk:lease:NAME                    string: the lease holder, expiring with the lease
//	gk:signing-keys                  hash: version, keys (the assertion key ring, sealed)
const (
	shards   = 16
	metaKey  = "gk:meta"
	genField = "generation"
)

// shardOf maps an account to its shard with FNV-1a, which every instance
// computes alike.
func shardOf(account string) int {
	h := uint32(2166136261)
	for i := 0; i < len(account); i++ {
		h ^= uint32(account[i])
		h *= 16777619
	}
	return int(h % shards)
}

// shardPrefix is "gk:{gk:NN}:".
func shardPrefix(shard int) string {
	b := make([]byte, 0, 12)
	b = append(b, "gk:{gk:"...)
	if shard < 10 {
		b = append(b, '0')
	}
	b = strconv.AppendInt(b, int64(shard), 10)
	b = append(b, "}:"...)
	return string(b)
}

func feedKey(shard int) string     { return shardPrefix(shard) + "feed" }
func seqKey(shard int) string      { return shardPrefix(shard) + "seq" }
func accountsKey(shard int) string { return shardPrefix(shard) + "accounts" }
func outboxedKey(shard int) string { return shardPrefix(shard) + "outboxed" }

// keys are the names of one account's keys.
type keys struct {
	id       string
	shard    int
	prefix   string
	acct     string
	rules    string
	ruleID   string
	users    string
	devices  string
	enrol    string
	requests string
	usage    string
	audit    string
	outbox   string
	outboxed string
	nstatus  string
	accounts string
	feed     string
	seq      string
	lastDays string
	reviews  string
}

func keysFor(account string) keys {
	shard := shardOf(account)
	p := shardPrefix(shard)
	return keys{
		id:       account,
		shard:    shard,
		prefix:   p,
		acct:     p + "acct:" + account,
		rules:    p + "rules:" + account,
		ruleID:   p + "ruleid:" + account,
		users:    p + "users:" + account,
		devices:  p + "devices:" + account,
		enrol:    p + "enrol:" + account,
		requests: p + "requests:" + account,
		usage:    p + "usage:" + account,
		audit:    p + "audit:" + account,
		outbox:   p + "outbox:" + account,
		outboxed: p + "outboxed",
		nstatus:  p + "nstatus:" + account,
		accounts: p + "accounts",
		feed:     p + "feed",
		seq:      p + "seq",
		lastDays: p + "lastdays",
		reviews:  p + "reviews",
	}
}

// session is the key of one session. The account is part of the name so
// that a token hash can never reach another account's session.
func (k keys) session(tokenHash string) string { return k.prefix + "sess:" + k.id + ":" + tokenHash }

// userSessions is the set of one user's session hashes.
func (k keys) userSessions(username string) string {
	return k.prefix + "usess:" + k.id + ":" + username
}
