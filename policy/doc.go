// Package policy decides whether a client address may reach an account.
//
// It holds the model (accounts, rules, users, sessions, audit entries), the
// contract every store backend implements ([Store] and [Tx]), and the
// [Engine] that keeps an immutable, lock-free [Table] of every account's
// allowed networks in step with the store's change feed.
//
// A lookup never blocks and never allocates: the engine builds a new table
// off to the side and publishes it with an atomic pointer swap. Everything
// fails closed: an unknown account, an unparseable address or a store that
// never answered denies.
//
// The package does not speak any network protocol and does not authenticate
// anyone; the proxy and admin packages do that on top of it.
package policy
