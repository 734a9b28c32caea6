// The conversations sidebar: newest first, paged ("Show older"), open, rename in place, delete with a
// second click to confirm (no browser dialogs).

import { requestJson } from "./http.js";
import { $, el } from "./dom.js";
import { showError } from "./toast.js";

const PAGE = 30;
let loaded = [];
let total = 0;
let activeId = null;
let handlers = { open: () => {}, renamed: () => {}, deleted: () => {} };

function item(session) {
  const title = session.title || "New conversation";
  const open = el("button", { type: "button", className: "session-open", title },
    el("span", { className: "session-title" }, title));
  open.addEventListener("click", () => handlers.open(session.session_id));
  const rename = el("button", { type: "button", className: "icon small session-rename", ariaLabel: `Rename ${title}` }, "✎");
  const remove = el("button", { type: "button", className: "icon small session-delete", ariaLabel: `Delete ${title}` }, "✕");
  const row = el("li", { className: "session", dataset: { id: session.session_id } }, open, rename, remove);
  if (session.session_id === activeId) {
    row.classList.add("active");
    open.setAttribute("aria-current", "true");
  }
  rename.addEventListener("click", () => startRename(row, session));
  remove.addEventListener("click", () => confirmDelete(row, session));
  return row;
}

function startRename(row, session) {
  const input = el("input", { className: "rename-input", value: session.title || "", maxLength: 200,
    ariaLabel: "New title" });
  const save = async () => {
    const title = input.value.trim();
    if (!title || title === session.title) return render();
    try {
      await requestJson(`/api/sessions/${encodeURIComponent(session.session_id)}`, { method: "PATCH", json: { title } });
      session.title = title;
      handlers.renamed(session.session_id, title);
    } catch (error) {
      showError(`Could not rename: ${error.message}`);
    }
    render();
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); save(); }
    if (event.key === "Escape") render();
  });
  input.addEventListener("blur", save, { once: true });
  row.replaceChildren(input);
  input.focus();
  input.select();
}

function confirmDelete(row, session) {
  const yes = el("button", { type: "button", className: "danger small session-confirm-delete" }, "Delete");
  const no = el("button", { type: "button", className: "small" }, "Cancel");
  no.addEventListener("click", render);
  yes.addEventListener("click", async () => {
    try {
      await requestJson(`/api/sessions/${encodeURIComponent(session.session_id)}`, { method: "DELETE" });
      loaded = loaded.filter((s) => s.session_id !== session.session_id);
      total -= 1;
      handlers.deleted(session.session_id);
    } catch (error) {
      showError(`Could not delete: ${error.message}`);
    }
    render();
  });
  row.replaceChildren(el("span", { className: "confirm-text" }, "Delete this conversation?"), yes, no);
  yes.focus();
}

function render() {
  $("session-list").replaceChildren(...loaded.map(item));
  $("no-sessions").hidden = loaded.length > 0;
  $("more-sessions").hidden = loaded.length >= total;
}

/** Reloads the first pages (as many as were shown). */
export async function refreshSessions() {
  const limit = Math.max(PAGE, loaded.length);
  const page = await requestJson(`/api/sessions?limit=${Math.min(limit, 200)}&offset=0`);
  loaded = page.data;
  total = page.total;
  render();
  return new Map(loaded.map((s) => [s.session_id, s.title]));
}

async function more() {
  try {
    const page = await requestJson(`/api/sessions?limit=${PAGE}&offset=${loaded.length}`);
    const known = new Set(loaded.map((s) => s.session_id));
    loaded.push(...page.data.filter((s) => !known.has(s.session_id)));
    total = page.total;
    render();
  } catch (error) {
    showError(error.message);
  }
}

export function markActive(id) {
  activeId = id;
  for (const row of $("session-list").children) {
    const active = row.dataset.id === id;
    row.classList.toggle("active", active);
    row.querySelector(".session-open")?.toggleAttribute("aria-current", active);
  }
}

export function initSessions(callbacks) {
  handlers = { ...handlers, ...callbacks };
  $("more-sessions").addEventListener("click", more);
}

export function resetSessions() {
  loaded = [];
  total = 0;
  render();
}
