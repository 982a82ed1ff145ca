// Passkeys on the pool's hosted pages (the only script they load): asks the browser's WebAuthn
// API to create or use a discoverable credential, then posts the result in an ordinary form,
// so the server answers with a normal page or redirect. Without script the forms stay hidden.
"use strict";
(() => {
  const enc = (buf) => {
    let s = "";
    for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  const dec = (s) => {
    const b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
    return Uint8Array.from(b, (c) => c.charCodeAt(0));
  };
  const fail = (form, err) => {
    const p = form.querySelector(".passkey-error");
    p.textContent = form.dataset.failed + (err && err.name ? ` (${err.name})` : "");
    p.hidden = false;
  };
  const options = async (form) => {
    const body = new URLSearchParams({ csrf_token: form.elements.csrf_token.value });
    const r = await fetch(form.dataset.options, { method: "POST", body, credentials: "same-origin" });
    if (!r.ok) throw new Error("options");
    return r.json();
  };
  const wire = (form, ceremony) => {
    if (!form) return;
    if (!window.PublicKeyCredential) return;
    form.hidden = false;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await ceremony(form, await options(form));
        form.submit();
      } catch (err) {
        fail(form, err);
      }
    });
  };
  wire(document.getElementById("passkey-login"), async (form, o) => {
    const cred = await navigator.credentials.get({
      publicKey: { challenge: dec(o.challenge), rpId: o.rpId, timeout: o.timeout, userVerification: o.userVerification, allowCredentials: [] },
    });
    const r = cred.response;
    form.elements.credential_id.value = enc(cred.rawId);
    form.elements.client_data.value = enc(r.clientDataJSON);
    form.elements.authenticator_data.value = enc(r.authenticatorData);
    form.elements.signature.value = enc(r.signature);
    form.elements.user_handle.value = r.userHandle ? enc(r.userHandle) : "";
  });
  wire(document.getElementById("passkey-register"), async (form, o) => {
    const publicKey = {
      ...o,
      challenge: dec(o.challenge),
      user: { ...o.user, id: dec(o.user.id) },
      excludeCredentials: o.excludeCredentials.map((c) => ({ type: c.type, id: dec(c.id) })),
    };
    const cred = await navigator.credentials.create({ publicKey });
    form.elements.client_data.value = enc(cred.response.clientDataJSON);
    form.elements.attestation_object.value = enc(cred.response.attestationObject);
  });
})();
