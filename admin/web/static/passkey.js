// The passkey ceremony: the one thing on these pages that needs a script,
// because WebAuthn is a browser API. It shows the passkey forms, and on
// submit asks the server for the ceremony's options, lets the browser make
// or use a passkey, and submits the form with the browser's answer in a
// hidden field. The server checks everything; no inline script, no eval.
"use strict";
(function () {
  function fromB64(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function toB64(buf) {
    var bytes = new Uint8Array(buf), s = "";
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function descriptors(list) {
    return (list || []).map(function (d) { return Object.assign({}, d, { id: fromB64(d.id) }); });
  }
  function answer(cred) {
    var r = cred.response, out = { id: cred.id, rawId: toB64(cred.rawId), type: cred.type, response: {
      clientDataJSON: toB64(r.clientDataJSON) } };
    if (r.attestationObject) {
      out.response.attestationObject = toB64(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = toB64(r.authenticatorData);
      out.response.signature = toB64(r.signature);
      if (r.userHandle) out.response.userHandle = toB64(r.userHandle);
    }
    return JSON.stringify(out);
  }
  async function ceremony(form) {
    var body = new URLSearchParams();
    ["csrf", "ticket"].forEach(function (n) { if (form.elements[n]) body.set(n, form.elements[n].value); });
    var res = await fetch(form.dataset.begin, { method: "POST", body: body, credentials: "same-origin" });
    if (!res.ok) throw new Error("the server refused to start (" + res.status + ")");
    var c = await res.json(), pk = c.options.publicKey, cred;
    pk.challenge = fromB64(pk.challenge);
    if (pk.user) {
      pk.user.id = fromB64(pk.user.id);
      pk.excludeCredentials = descriptors(pk.excludeCredentials);
      cred = await navigator.credentials.create({ publicKey: pk });
    } else {
      pk.allowCredentials = descriptors(pk.allowCredentials);
      cred = await navigator.credentials.get({ publicKey: pk, mediation: c.options.mediation || undefined });
    }
    form.elements.token.value = c.token;
    form.elements.credential.value = answer(cred);
    form.submit();
  }
  if (!window.PublicKeyCredential) return;
  document.querySelectorAll("form[data-begin]").forEach(function (form) {
    form.hidden = false;
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (!form.reportValidity()) return;
      var err = form.querySelector(".error");
      err.hidden = true;
      ceremony(form).catch(function (e) {
        err.textContent = "No passkey was used: " + e.message;
        err.hidden = false;
      });
    });
  });
})();
