// Passkeys on Cloakroom's pages: the one script the pages load, from /static/ (the
// Content-Security-Policy allows scripts from this origin only, none inline).
//
// A form marked `data-passkey="create"` (add a passkey) or `data-passkey="get"` (sign in, second
// factor, step-up) asks the API at `data-options` for a challenge, hands it to the browser's
// WebAuthn (navigator.credentials), puts the answer in the form's hidden `credential` field as
// JSON, and submits the form as any other: the server checks it and answers with a page. Every
// other form works without this script.
(() => {
  'use strict';
  if (!window.PublicKeyCredential || !navigator.credentials) return;

  const decode = (text) => {
    const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
  };
  const encode = (buffer) => {
    let bin = '';
    for (const byte of new Uint8Array(buffer)) bin += String.fromCharCode(byte);
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  };
  const withIds = (list) => (list || []).map((c) => ({ ...c, id: decode(c.id) }));

  const creation = (pk) => ({
    ...pk,
    challenge: decode(pk.challenge),
    user: { ...pk.user, id: decode(pk.user.id) },
    excludeCredentials: withIds(pk.excludeCredentials),
  });
  const request = (pk) => ({
    ...pk,
    challenge: decode(pk.challenge),
    allowCredentials: withIds(pk.allowCredentials),
  });

  const registration = (cred) => ({
    id: cred.id,
    rawId: encode(cred.rawId),
    type: cred.type,
    response: {
      attestationObject: encode(cred.response.attestationObject),
      clientDataJSON: encode(cred.response.clientDataJSON),
      transports: cred.response.getTransports ? cred.response.getTransports() : undefined,
    },
    extensions: cred.getClientExtensionResults(),
  });
  const assertion = (cred) => ({
    id: cred.id,
    rawId: encode(cred.rawId),
    type: cred.type,
    response: {
      authenticatorData: encode(cred.response.authenticatorData),
      clientDataJSON: encode(cred.response.clientDataJSON),
      signature: encode(cred.response.signature),
      userHandle: cred.response.userHandle ? encode(cred.response.userHandle) : null,
    },
    extensions: cred.getClientExtensionResults(),
  });

  async function challenge(form) {
    const csrf = form.querySelector('input[name="csrf_token"]');
    const response = await fetch(form.dataset.options, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf ? csrf.value : '' },
      body: '{}',
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.message || `The server answered ${response.status}.`);
    return body.publicKey;
  }

  function say(form, message) {
    const alert = form.querySelector('.passkey-error');
    alert.textContent = message;
    alert.hidden = false;
  }

  for (const form of document.querySelectorAll('form[data-passkey]')) {
    form.hidden = false;
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const button = form.querySelector('button[type="submit"]');
      button.disabled = true;
      try {
        const pk = await challenge(form);
        const answer = form.dataset.passkey === 'create'
          ? registration(await navigator.credentials.create({ publicKey: creation(pk) }))
          : assertion(await navigator.credentials.get({ publicKey: request(pk) }));
        form.elements.credential.value = JSON.stringify(answer);
        form.submit();
      } catch (e) {
        say(form, e && e.name === 'NotAllowedError'
          ? 'The passkey request was cancelled or timed out. Try again.'
          : (e && e.message) || 'The passkey did not work.');
        button.disabled = false;
      }
    });
  }
  for (const note of document.querySelectorAll('.passkey-needs-script')) note.hidden = true;
})();
