// Package notify delivers the notifications a store's outbox holds: signed
// webhooks and plain-text email. A Dispatcher takes the fleet-wide lease,
// so one instance at a time delivers; it retries each destination with
// exponential backoff for 24 hours, records every attempt in the outbox
// entry, and keeps each account's notifications in commit order per
// destination.
//
// It does not decide what is notified or to whom: policy.EventOf and
// policy.DestinationsFor do, and the store writes the outbox entry with
// the change it reports.
package notify
