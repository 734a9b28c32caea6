// The admin panel (admins only; the server checks too): list, create, disable/enable and delete users.

import { requestJson } from "./http.js";
import { $, el, when } from "./dom.js";
import { showError, showInfo } from "./toast.js";

let me = null;

function userRow(user) {
  const toggle = el("button", { type: "button", className: "small" }, user.disabled ? "Enable" : "Disable");
  toggle.addEventListener("click", async () => {
    try {
      await requestJson(`/api/admin/users/${encodeURIComponent(user.username)}`, {
        method: "PATCH", json: { disabled: !user.disabled },
      });
    } catch (error) {
      showError(error.message);
    }
    refreshUsers();
  });
  const remove = el("button", { type: "button", className: "small danger" }, "Delete");
  remove.addEventListener("click", () => {
    const yes = el("button", { type: "button", className: "small danger" }, `Delete ${user.username} and all their data`);
    const no = el("button", { type: "button", className: "small" }, "Cancel");
    no.addEventListener("click", refreshUsers);
    yes.addEventListener("click", async () => {
      try {
        await requestJson(`/api/admin/users/${encodeURIComponent(user.username)}`, { method: "DELETE" });
        showInfo(`${user.username} deleted.`);
      } catch (error) {
        showError(error.message);
      }
      refreshUsers();
    });
    remove.parentElement.replaceChildren(yes, no);
    yes.focus();
  });
  const self = me && user.username === me.username;
  return el("tr", { dataset: { username: user.username } },
    el("td", {}, user.username), el("td", {}, user.role),
    el("td", {}, user.disabled ? "disabled" : "active"), el("td", {}, when(user.created_at)),
    el("td", {}, self ? el("span", { className: "muted" }, "you") : [toggle, " ", remove]));
}

export async function refreshUsers() {
  try {
    const users = await requestJson("/api/admin/users");
    $("user-rows").replaceChildren(...users.data.map(userRow));
  } catch (error) {
    showError(`Could not list users: ${error.message}`);
  }
}

export function initAdmin() {
  $("user-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    try {
      await requestJson("/api/admin/users", {
        method: "POST", json: { username: form.username.value.trim(), password: form.password.value, role: form.role.value },
      });
      showInfo(`${form.username.value} created.`);
      form.reset();
    } catch (error) {
      showError(`User not created: ${error.message}`);
    }
    refreshUsers();
  });
}

export function setAdminUser(user) {
  me = user;
}
