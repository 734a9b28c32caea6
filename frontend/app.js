// The web UI: sign in, pick a model, chat with streamed answers. Talks to the same origin,
// which run_frontend.py (or nginx) forwards to the API server.
"use strict";

const state = { token: sessionStorage.getItem("token"), sessionId: null, history: [], busy: false };
const $ = (id) => document.getElementById(id);

function authHeaders() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body.error?.message || response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

function show(view) {
  $("login-view").hidden = view !== "login";
  $("chat-view").hidden = view !== "chat";
}

async function signIn(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  $("login-error").textContent = "";
  const response = await fetch("/api/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
  });
  if (!response.ok) {
    $("login-error").textContent = await errorMessage(response);
    return;
  }
  const body = await response.json();
  state.token = body.access_token;
  sessionStorage.setItem("token", state.token);
  await enterChat();
}

function signOut() {
  state.token = null;
  sessionStorage.removeItem("token");
  newChat();
  show("login");
}

async function enterChat() {
  const me = await fetch("/api/auth/me", { headers: authHeaders() });
  if (me.status === 401) return signOut();
  if (me.ok) {
    const user = await me.json();
    $("whoami").textContent = `${user.username} (${user.role})`;
  }
  const models = await fetch("/v1/models", { headers: authHeaders() });
  if (!models.ok) {
    $("chat-error").textContent = await errorMessage(models);
  } else {
    const { data } = await models.json();
    // The embedding model is listed for /v1/embeddings clients; it cannot chat.
    const chatModels = data.filter((m) => m.owned_by !== "local-embeddings");
    $("model").replaceChildren(...chatModels.map((m) => new Option(m.id, m.id)));
  }
  show("chat");
  $("prompt").focus();
}

function addMessage(role, text) {
  const element = document.createElement("div");
  element.className = `message ${role}`;
  element.textContent = text;
  $("messages").append(element);
  element.scrollIntoView({ block: "end" });
  return element;
}

function newChat() {
  state.sessionId = null;
  state.history = [];
  $("messages").replaceChildren();
  $("chat-error").textContent = "";
}

// Reads an OpenAI SSE stream: `data: <json>` events, ended by `data: [DONE]`.
async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let boundary;
    while ((boundary = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      yield JSON.parse(data);
    }
  }
}

async function send(event) {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || state.busy) return;
  state.busy = true;
  $("send").disabled = true;
  $("chat-error").textContent = "";
  $("prompt").value = "";
  addMessage("user", text);
  state.history.push({ role: "user", content: text });
  const bubble = addMessage("assistant", "");
  try {
    const headers = { "Content-Type": "application/json", ...authHeaders() };
    if (state.sessionId) headers["X-Session-Id"] = state.sessionId;
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers,
      body: JSON.stringify({
        model: $("model").value, messages: state.history, stream: true, mode: $("mode").value,
      }),
    });
    if (response.status === 401) return signOut();
    if (!response.ok) throw new Error(await errorMessage(response));
    state.sessionId = response.headers.get("X-Session-Id") || state.sessionId;
    let answer = "";
    for await (const chunk of sseEvents(response)) {
      if (chunk.error) throw new Error(chunk.error.message);
      answer += chunk.choices?.[0]?.delta?.content || "";
      bubble.textContent = answer;
      bubble.scrollIntoView({ block: "end" });
    }
    state.history.push({ role: "assistant", content: answer });
  } catch (error) {
    bubble.remove();
    state.history.pop();
    $("chat-error").textContent = error.message;
  } finally {
    state.busy = false;
    $("send").disabled = false;
    $("prompt").focus();
  }
}

$("login-form").addEventListener("submit", signIn);
$("chat-form").addEventListener("submit", send);
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) $("chat-form").requestSubmit();
});
$("new-chat").addEventListener("click", newChat);
$("sign-out").addEventListener("click", signOut);
if (state.token) enterChat(); else show("login");
