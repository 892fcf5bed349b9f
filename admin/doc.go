// Package admin is the HTTPS admin API for account holders, their
// employees and operators: logins and sessions, firewall mode and rules,
// staff and offboarding, self-service unblock and the audit trail.
//
// It has two layers. [Service] holds the logic: each method takes the
// acting identity ([Actor]), decides whether it may act, and makes its
// change in one policy store transaction together with exactly one audit
// entry, so that a change the store refuses leaves nothing behind. [Server]
// is the JSON API over it (the table in SPEC.md): it authenticates the
// bearer token, finds the client address, decodes bodies strictly and turns
// every error into {"error":{"code","message"}} in one place. The web pages
// (package admin/web, mounted beside the API by ServerOptions.Pages) call
// the same Service methods.
//
//	svc, _ := admin.New(admin.Options{Store: st, Logger: log, Registerer: reg})
//	srv, _ := admin.NewServer(admin.ServerOptions{Service: svc, TLSConfig: tc, OperatorToken: tok})
//	go srv.Serve(ctx, ln)
//
// Identities: a master logs in with the account number and the master
// password and may act on that account and on its child accounts; a user
// logs in with a username too and may unblock their own address (with
// desktop access) and manage their own grants; the operator presents the
// token from the operator token file and may create and list accounts.
// Anything about an account the caller may not see answers 404, as if it
// did not exist. A user who must reset their password gets 403
// password_reset_required everywhere but /me, /password and /logout.
//
// A master or user may add a second factor (TOTP with recovery codes,
// mfa.go): the login then needs its code, each code is accepted once in
// the transaction that opens the session, and the secret is sealed with
// the operator's secrets key (SecretsKey). An account's require_mfa holds
// a person without one on enrolment: every route not marked held answers
// 403 mfa_enrollment_required. People see and end their sessions, and a
// master the account's (sessionlist.go).
//
// Changes reach the proxies through the store's change feed; the package
// never talks to a proxy. Revoking a grant is deleting its rule, and the
// proxies close the connections it alone allowed. The optional
// Options.LiveConnections hook only counts them for the reports.
//
// Login limits are kept in memory, per instance: with several instances
// behind a load balancer, an attacker gets each instance's budget.
//
// Nothing secret is logged: no password, token, token hash, password
// hash, TOTP secret, code or recovery code, and request bodies never are.
package admin
