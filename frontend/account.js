// The account panel: change password (the server returns a fresh token), API keys (the new key shown
// once, with a copy button), sign out.

import { requestJson, setToken } from "./http.js";
import { $, copyText, el, when } from "./dom.js";
import { showError, showInfo } from "./toast.js";

export async function refreshKeys() {
  try {
    const keys = await requestJson("/api/auth/api-keys");
    $("key-rows").replaceChildren(...keys.data.map((key) => {
      const revoke = el("button", { type: "button", className: "small danger", ariaLabel: `Revoke ${key.name}` }, "Revoke");
      revoke.addEventListener("click", async () => {
        try {
          await requestJson(`/api/auth/api-keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
          showInfo(`Key “${key.name}” revoked.`);
        } catch (error) {
          showError(`Could not revoke: ${error.message}`);
        }
        refreshKeys();
      });
      return el("tr", { dataset: { id: key.id } }, el("td", {}, key.name), el("td", { className: "mono" }, `${key.prefix}…`),
        el("td", {}, when(key.created_at)), el("td", {}, key.last_used_at ? when(key.last_used_at) : "never"),
        el("td", {}, revoke));
    }));
  } catch (error) {
    showError(`Could not list API keys: ${error.message}`);
  }
}

export function initAccount({ signOut }) {
  $("sign-out").addEventListener("click", signOut);
  $("password-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    $("password-result").textContent = "";
    try {
      const body = await requestJson("/api/auth/me/password", {
        method: "PUT", json: { current_password: form.current.value, new_password: form.new.value },
      });
      setToken(body.access_token);
      form.reset();
      $("password-result").textContent = "Password changed. Other sign-ins were signed out.";
    } catch (error) {
      showError(`Password not changed: ${error.message}`);
    }
  });
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    try {
      const created = await requestJson("/api/auth/api-keys", { method: "POST", json: { name: form.name.value.trim() } });
      form.reset();
      $("new-key-value").textContent = created.key;
      $("new-key").hidden = false;
      refreshKeys();
    } catch (error) {
      showError(`Key not created: ${error.message}`);
    }
  });
  $("copy-key").addEventListener("click", () => copyText($("new-key-value").textContent, $("copy-key")));
}

export function hideNewKey() {
  $("new-key").hidden = true;
  $("new-key-value").textContent = "";
}
