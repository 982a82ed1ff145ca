// Shows the signed-in identity from Portcullis's /oauth2/userinfo (same origin, cookie sent).
(async () => {
  const list = document.getElementById("who");
  const row = (k, v) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    list.append(dt, dd);
  };
  list.replaceChildren();
  try {
    const r = await fetch("/oauth2/userinfo", { headers: { Accept: "application/json" } });
    if (!r.ok) {
      row("status", `not signed in (${r.status})`);
      return;
    }
    const info = await r.json();
    row("user", info.claims?.["cognito:username"] ?? info.sub);
    row("email", info.email ?? "-");
    row("groups", (info.groups ?? []).join(", ") || "-");
    row("sub", info.sub);
  } catch (e) {
    row("error", String(e));
  }
})();
