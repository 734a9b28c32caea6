// The page's entry point: sign-in, the views and panels, the sidebar toggle on narrow screens, and
// wiring the modules (chat, sessions, documents, account, admin) together.

import { initAccount, hideNewKey, refreshKeys } from "./account.js";
import { initAdmin, refreshUsers, setAdminUser } from "./admin.js";
import { ApiError, errorMessage, requestJson, setToken, token, whenSignInExpires } from "./http.js";
import {
  currentSessionId, forget, initChat, newChat, onConversationChange, openSession, rememberedSessionId,
  renameCurrent, stop,
} from "./chat.js";
import { initDocuments, refreshDocuments } from "./documents.js";
import { $ } from "./dom.js";
import { initSessions, markActive, refreshSessions, resetSessions } from "./sessions.js";
import { hideToast, showError } from "./toast.js";

let user = null;

function showView(name) {
  $("login-view").hidden = name !== "login";
  $("app-view").hidden = name !== "app";
}

function showPanel(name) {
  for (const panel of ["chat", "documents", "account", "admin"]) $(`panel-${panel}`).hidden = panel !== name;
  for (const button of document.querySelectorAll("nav .nav")) {
    button.toggleAttribute("aria-current", button.dataset.panel === name);
    if (button.dataset.panel === name) button.setAttribute("aria-current", "page");
  }
  if (name === "documents") refreshDocuments();
  if (name === "account") refreshKeys();
  if (name === "admin") refreshUsers();
  closeSidebar();
}

function openSidebar() {
  document.body.classList.add("sidebar-open");
  $("scrim").hidden = false;
  $("sidebar-toggle").setAttribute("aria-expanded", "true");
}

function closeSidebar() {
  document.body.classList.remove("sidebar-open");
  $("scrim").hidden = true;
  $("sidebar-toggle").setAttribute("aria-expanded", "false");
}

function signedOut(message) {
  stop();
  user = null;
  setToken(null);
  hideNewKey();
  resetSessions();
  newChat();
  hideToast();
  $("login-notice").textContent = message || "";
  $("login-notice").hidden = !message;
  showView("login");
  $("login-form").username.focus();
}

async function loadModels() {
  const { data } = await requestJson("/v1/models");
  // The embedding model is listed for /v1/embeddings clients; it cannot chat.
  const chatModels = data.filter((model) => model.owned_by !== "local-embeddings");
  const previous = localStorage.getItem("model");
  $("model").replaceChildren(...chatModels.map((model) => new Option(model.id, model.id)));
  if (previous && chatModels.some((model) => model.id === previous)) $("model").value = previous;
}

async function enter() {
  try {
    user = await requestJson("/api/auth/me");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) {
      showView("login");
      $("login-error").textContent = error.message;
    }
    return;
  }
  $("whoami").textContent = `${user.username} (${user.role})`;
  $("account-name").textContent = user.username;
  $("account-role").textContent = user.role;
  $("nav-admin").hidden = user.role !== "admin";
  setAdminUser(user);
  showView("app");
  showPanel("chat");
  const work = [loadModels(), refreshSessions()];
  const remembered = rememberedSessionId();
  if (remembered) work.push(openSession(remembered));
  for (const result of await Promise.allSettled(work)) {
    if (result.status === "rejected" && result.reason?.status !== 401) showError(result.reason.message);
  }
  markActive(currentSessionId());
  $("prompt").focus();
}

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  $("login-error").textContent = "";
  $("login-notice").hidden = true;
  let response;
  try {
    response = await fetch("/api/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: form.username.value, password: form.password.value }),
    });
  } catch {
    $("login-error").textContent = "The server cannot be reached. Check that it is running.";
    return;
  }
  if (!response.ok) {
    $("login-error").textContent = await errorMessage(response);
    return;
  }
  const body = await response.json();
  setToken(body.access_token);
  form.password.value = "";
  await enter();
}

/** The server records an answer just after its stream ends: look again until the session is listed. */
async function refreshUntilListed(id, attempts = 8) {
  for (let attempt = 0; attempt < attempts; attempt += 1) {
    try {
      const listed = await refreshSessions();
      markActive(currentSessionId());
      if (listed.has(id)) {
        if (id === currentSessionId()) renameCurrent(id, listed.get(id));
        return;
      }
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 250 * (attempt + 1)));
  }
}

function start() {
  whenSignInExpires(signedOut);
  initChat();
  initDocuments();
  initAccount({ signOut: () => signedOut("") });
  initAdmin();
  initSessions({
    open: (id) => {
      showPanel("chat");
      openSession(id).catch((error) => showError(error.message));
    },
    renamed: renameCurrent,
    deleted: forget,
  });
  onConversationChange((id, { refresh } = {}) => {
    // A stream that ends after "New chat" reports its own id: the highlight follows the open one.
    markActive(currentSessionId());
    if (refresh) refreshUntilListed(id);
  });
  $("login-form").addEventListener("submit", signIn);
  $("new-chat").addEventListener("click", () => {
    showPanel("chat");
    newChat();
  });
  for (const button of document.querySelectorAll("nav .nav")) {
    button.addEventListener("click", () => showPanel(button.dataset.panel));
  }
  $("sidebar-toggle").addEventListener("click", () => {
    if (document.body.classList.contains("sidebar-open")) closeSidebar(); else openSidebar();
  });
  $("scrim").addEventListener("click", closeSidebar);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeSidebar();
  });
  $("model").addEventListener("change", () => localStorage.setItem("model", $("model").value));
  $("mode").value = localStorage.getItem("mode") || "auto";
  $("mode").addEventListener("change", () => localStorage.setItem("mode", $("mode").value));
  const maxTokens = localStorage.getItem("maxTokens");
  if (maxTokens) $("max-tokens").value = maxTokens;
  $("max-tokens").addEventListener("change", () => localStorage.setItem("maxTokens", $("max-tokens").value));
  if (token()) enter(); else showView("login");
}

start();
