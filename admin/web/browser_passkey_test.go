package web

import (
	"testing"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// TestBrowserPasskey is issue 16's show for passkeys, in Chromium with the
// DevTools virtual authenticator (CTAP2, resident keys, user
// verification): register a passkey on the security page, log out, log in
// with it as the second step after the password and then with nothing
// else, remove it, and see that it no longer logs in. The pages are opened
// at https://localhost:PORT, the fixture's admin.public_url: WebAuthn
// wants a host name for the relying party, not an address.
func TestBrowserPasskey(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	b := newTab(t, f, "")
	b.base = f.localURL
	if _, err := chromedp.Call(b.ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	auth, err := chromedp.Call(b.ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
		Options: &webauthn.VirtualAuthenticatorOptions{Protocol: webauthn.AuthenticatorProtocolCtap2,
			Transport: webauthn.AuthenticatorTransportInternal, HasResidentKey: true, HasUserVerification: true,
			IsUserVerified: true, AutomaticPresenceSimulation: true}})
	if err != nil {
		t.Fatal(err)
	}
	logIn := func() {
		b.open("/login")
		b.typeInto("account", acctA)
		b.typeInto("username", "alice")
		b.typeInto("password", pwAlice)
		b.press(`button[type="submit"].primary`)
	}
	logIn()
	b.at("/me")
	b.press(`a[href="/security"]`)
	b.sees("Passkeys", "Add a passkey")
	b.do(chromedp.WaitVisible(chromedp.CSS("#passkey-add")))
	b.typeInto("passkey-name", "office laptop")
	b.press(`#passkey-add button`)
	b.at("/security")
	b.sees(`Passkey "office laptop" added`)
	if got := b.text(`form[action^="/security/passkeys/"][action$="/delete"]`); got != "Remove" {
		t.Fatalf("no passkey listed: %q", got)
	}
	creds, err := chromedp.Call(b.ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: auth.AuthenticatorID})
	if err != nil || len(creds.Credentials) != 1 || !creds.Credentials[0].IsResidentCredential {
		t.Fatalf("the authenticator holds %+v (%v), want one resident credential", creds.Credentials, err)
	}
	// Renamed on the same page, without JavaScript of its own.
	b.do(chromedp.SetValue(chromedp.CSS(`form[action$="/rename"] input[name="name"]`), "Anna's old laptop"))
	b.press(`form[action$="/rename"] button`)
	b.at("/security")
	b.sees(`The passkey is now called "Anna's old laptop".`)
	b.screenshot("security-passkeys")
	b.press(`nav form[action="/logout"] button`)
	b.at("/login")

	// The second step: the password, then the passkey, and no code asked
	// of someone without an authenticator app.
	logIn()
	b.sees("Your password is right. Now use your passkey.", "Use your passkey")
	codeFields, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll('input[name="otp"]').length`))
	if err != nil || codeFields != 0 {
		t.Fatalf("a passkey-only login asks for a code (%d fields, %v)", codeFields, err)
	}
	b.do(chromedp.WaitVisible(chromedp.CSS("#passkey-login")))
	b.press(`#passkey-login button`)
	b.at("/me")
	b.press(`nav form[action="/logout"] button`)
	b.at("/login")

	// The passkey alone.
	b.do(chromedp.WaitVisible(chromedp.CSS("#passkey-login")))
	b.press(`#passkey-login button`)
	b.at("/me")
	b.sees("Alice Martin")

	// Remove it: it no longer logs in, though the authenticator keeps it.
	b.press(`a[href="/security"]`)
	b.press(`form[action^="/security/passkeys/"][action$="/delete"] button`)
	b.at("/security")
	b.sees("That passkey no longer logs you in.")
	b.press(`nav form[action="/logout"] button`)
	b.at("/login")
	b.do(chromedp.WaitVisible(chromedp.CSS("#passkey-login")))
	b.press(`#passkey-login button`)
	b.at("/login/passkey")
	b.sees("the passkey was not accepted")
}
