// The open conversation: sending (streamed from /v1/chat/completions), stopping, switching. Each
// conversation is its own object with its own AbortController, so "New chat" mid-stream stops the old
// answer and nothing of it reaches the new conversation. The session id is made here and sent as
// X-Session-Id from the first message on, so every exchange is recorded in the right session.

import { ApiError, request, requestJson } from "./http.js";
import { $ } from "./dom.js";
import { MessageView, storedMessageView } from "./message_view.js";
import { sseEvents } from "./sse.js";
import { hideToast, showError } from "./toast.js";

const OPEN_KEY = "openSession";
let current = null;
let listeners = { changed: () => {} };

function newSessionId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `sess_${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

class Conversation {
  constructor(id = newSessionId(), title = "") {
    this.id = id;
    this.title = title;
    this.history = [];
    this.controller = null;
  }
}

function scrollToEnd() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function show(view) {
  $("messages").append(view.element);
  $("empty-chat").hidden = true;
  scrollToEnd();
}

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("send").disabled = busy;
}

function setTitle(title) {
  $("chat-title").textContent = title || "New conversation";
}

function switchTo(conversation) {
  if (current?.controller) current.controller.abort();
  current = conversation;
  $("messages").replaceChildren();
  $("empty-chat").hidden = false;
  setBusy(false);
  setTitle(conversation.title);
  listeners.changed(conversation.id);
}

export function currentSessionId() {
  return current?.id;
}

export function onConversationChange(handler) {
  listeners.changed = handler;
}

export function newChat() {
  sessionStorage.removeItem(OPEN_KEY);
  localStorage.removeItem(OPEN_KEY);
  switchTo(new Conversation());
  $("prompt").focus();
}

/** Opens a stored session; a missing one (never answered, or deleted) opens as a new chat. */
export async function openSession(id) {
  const conversation = new Conversation(id);
  switchTo(conversation);
  let stored;
  try {
    stored = await requestJson(`/api/sessions/${encodeURIComponent(id)}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      localStorage.removeItem(OPEN_KEY);
      if (current === conversation) switchTo(new Conversation());
      return;
    }
    throw error;
  }
  if (current !== conversation) return;
  conversation.title = stored.title;
  setTitle(stored.title);
  localStorage.setItem(OPEN_KEY, id);
  for (const message of stored.messages || []) {
    if (message.role !== "user" && message.role !== "assistant") continue;
    if (message.role === "assistant" && !message.content && message.tool_calls) continue;
    conversation.history.push({ role: message.role, content: message.content || "" });
    show(storedMessageView(message));
  }
}

/** The conversation open before the reload, if any. */
export function rememberedSessionId() {
  return localStorage.getItem(OPEN_KEY);
}

export function renameCurrent(id, title) {
  if (current?.id === id) {
    current.title = title;
    setTitle(title);
  }
}

export function forget(id) {
  if (current?.id === id) newChat();
}

function settings() {
  const maxTokens = Number.parseInt($("max-tokens").value, 10);
  return {
    model: $("model").value,
    mode: $("mode").value,
    ...(Number.isFinite(maxTokens) && maxTokens > 0 ? { max_tokens: maxTokens } : {}),
  };
}

async function send(text) {
  const conversation = current;
  if (conversation.controller || !text) return;
  hideToast();
  const userView = new MessageView("user");
  userView.setText(text);
  show(userView);
  conversation.history.push({ role: "user", content: text });
  localStorage.setItem(OPEN_KEY, conversation.id);
  const answer = new MessageView("assistant");
  show(answer);
  const controller = new AbortController();
  conversation.controller = controller;
  setBusy(true);
  let content = "";
  let failed = null;
  try {
    const response = await request("/v1/chat/completions", {
      method: "POST",
      headers: { "X-Session-Id": conversation.id },
      json: { ...settings(), messages: conversation.history.slice(), stream: true },
      signal: controller.signal,
    });
    answer.setMode(response.headers.get("X-Agent-Mode"));
    for await (const chunk of sseEvents(response)) {
      if (chunk.error) throw new ApiError(chunk.error.message || "The answer failed.", 500);
      const delta = chunk.choices?.[0]?.delta || {};
      if (delta.reasoning_content) answer.addReasoning(delta.reasoning_content);
      if (delta.content) {
        content += delta.content;
        answer.setText(content);
        if (current === conversation) scrollToEnd();
      }
      if (chunk.agent) answer.setMode(chunk.agent.mode, chunk.agent.reason);
      if (chunk.sources) answer.setSources(chunk.sources);
    }
    if (!content) answer.setStatus("(The model gave an empty answer.)");
  } catch (error) {
    if (error.name === "AbortError") answer.setStatus("Stopped.");
    else failed = error;
  } finally {
    conversation.controller = null;
    answer.done();
  }
  if (failed && !content) {
    // Nothing was answered: take the turn back so it can be edited and sent again.
    conversation.history.pop();
    userView.element.remove();
    answer.element.remove();
    if (current === conversation && !$("prompt").value) $("prompt").value = text;
  } else {
    conversation.history.push({ role: "assistant", content });
  }
  if (current === conversation) {
    setBusy(false);
    if (failed) showError(failed.message);
    $("prompt").focus();
  }
  listeners.changed(conversation.id, { refresh: true });
  if (!failed) await addKeptTrace(conversation, answer);
}

/** The stream carries steps as text; the stored turn has them as rows (tool, input, result, time). */
async function addKeptTrace(conversation, answer) {
  if (!answer.reasoning) return;
  try {
    const stored = await requestJson(`/api/sessions/${encodeURIComponent(conversation.id)}`);
    const last = [...(stored.messages || [])].reverse().find((message) => message.role === "assistant");
    if (last?.steps?.length) answer.setSteps(last.steps, last.reasoning_content);
  } catch {
    // The live steps stay shown; the kept table is a nicety.
  }
}

export function stop() {
  current?.controller?.abort();
}

export function initChat() {
  current = new Conversation();
  const prompt = $("prompt");
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || current.controller) return;
    prompt.value = "";
    send(text).catch((error) => showError(error.message));
  });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();  // else the newline lands in the emptied box
      $("chat-form").requestSubmit();
    }
  });
  $("stop").addEventListener("click", stop);
}
