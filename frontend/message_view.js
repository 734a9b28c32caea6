// One message on screen: the answer (Markdown, sanitised), the mode the router chose and why, the agent's
// steps in a collapsible panel, the sources, and copy buttons. Knows nothing about requests.

import { copyText, el } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

const MODE_NAMES = { chat: "chat", react: "ReAct", plan_execute: "plan-execute" };

function shorten(text, limit = 400) {
  const value = String(text ?? "");
  return value.length > limit ? `${value.slice(0, limit - 1)}…` : value;
}

function argumentsText(args) {
  if (args === null || args === undefined) return "";
  if (typeof args === "string") return args;
  const entries = Object.entries(args);
  if (entries.length === 1 && typeof entries[0][1] === "string") return entries[0][1];
  return JSON.stringify(args);
}

function pageLabel(meta) {
  const start = meta.page_start;
  const end = meta.page_end;
  if (!start) return "";
  return end && end !== start ? `pp. ${start}-${end}` : `p. ${start}`;
}

function sourceItem(source) {
  const meta = source.metadata || {};
  const item = el("li", { className: "source" });
  const quote = el("blockquote", { className: "quote", hidden: true }, source.snippet || "(no passage)");
  if (meta.filename) {
    const page = pageLabel(meta);
    const toggle = el("button", { type: "button", className: "link source-doc", ariaExpanded: "false" },
      el("span", { className: "filename" }, meta.filename), page ? el("span", { className: "page" }, ` ${page}`) : null);
    toggle.addEventListener("click", () => {
      quote.hidden = !quote.hidden;
      toggle.setAttribute("aria-expanded", String(!quote.hidden));
    });
    item.append(el("span", { className: "kind", ariaHidden: "true" }, "§ "), toggle, quote);
  } else if (source.url && /^https?:\/\//i.test(source.url)) {
    item.append(el("span", { className: "kind", ariaHidden: "true" }, "↗ "),
      el("a", { href: source.url, target: "_blank", rel: "noopener noreferrer" }, source.title || source.url));
    if (source.snippet) item.append(el("div", { className: "muted snippet" }, shorten(source.snippet, 240)));
  } else {
    item.append(el("span", { className: "kind", ariaHidden: "true" }, "• "), el("span", {}, source.title || "source"));
    if (source.snippet) item.append(el("div", { className: "muted snippet" }, shorten(source.snippet, 240)));
  }
  return item;
}

export class MessageView {
  constructor(role) {
    this.role = role;
    this.text = "";
    this.reasoning = "";
    this.content = el("div", { className: "content markdown" });
    this.element = el("article", { className: `message ${role}`, ariaLabel: role === "user" ? "You" : "Assistant" });
    if (role === "user") {
      this.element.append(this.content);
      return;
    }
    this.meta = el("div", { className: "meta", hidden: true });
    this.stepsList = el("div", { className: "steps-body" });
    this.stepsSummary = el("summary", {}, "Agent steps");
    this.steps = el("details", { className: "steps", hidden: true }, this.stepsSummary, this.stepsList);
    this.sources = el("section", { className: "sources", hidden: true, ariaLabel: "Sources" });
    this.status = el("p", { className: "status muted", hidden: true });
    this.copy = el("button", { type: "button", className: "small copy-answer", hidden: true }, "Copy answer");
    this.copy.addEventListener("click", () => copyText(this.text, this.copy));
    this.element.append(this.meta, this.steps, this.content, this.status, this.sources,
      el("div", { className: "actions" }, this.copy));
    this.element.classList.add("pending");
    this._frame = 0;
  }

  setText(text) {
    this.text = text;
    if (this.role === "user") {
      this.content.textContent = text;
      return;
    }
    this.copy.hidden = !text;
    if (this._frame) return;
    // One render per frame while tokens stream in.
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      renderMarkdown(this.content, this.text);
      if (this.text) this.element.classList.remove("pending");
    });
  }

  flush() {
    if (this._frame) cancelAnimationFrame(this._frame);
    this._frame = 0;
    if (this.role !== "user") renderMarkdown(this.content, this.text);
    this.element.classList.remove("pending");
  }

  setMode(mode, reason) {
    if (!mode) return;
    this.meta.hidden = false;
    this.meta.replaceChildren(el("span", { className: "badge mode" }, MODE_NAMES[mode] || mode),
      reason ? el("span", { className: "reason muted" }, ` ${reason}`) : null);
  }

  addReasoning(line) {
    this.reasoning += line;
    this.steps.hidden = false;
    if (!this.live) {
      this.live = el("pre", { className: "live-steps" });
      this.stepsList.replaceChildren(this.live);
      this.steps.open = true;
    }
    this.live.textContent = this.reasoning;
    this.stepsSummary.textContent = "Agent steps (running…)";
  }

  /** The kept trace: one row per step (tool, input, result, duration). */
  setSteps(steps, reasoning = "") {
    const shown = (steps || []).filter((step) => step.tool || step.thought || step.observation);
    if (!shown.length) {
      if (reasoning) this.addReasoning(reasoning);
      this.stepsSummary.textContent = `Agent steps`;
      return;
    }
    this.steps.hidden = false;
    this.live = null;
    const rows = shown.map((step) => el("tr", { className: step.ok === false ? "failed" : "" },
      el("td", {}, String(step.index ?? "")),
      el("td", { className: "nowrap" }, step.tool && step.kind !== "action" ? `${step.tool} (${step.kind})` : step.tool || step.kind || ""),
      el("td", { className: "mono" }, step.tool ? shorten(argumentsText(step.arguments), 300) : shorten(step.thought, 300)),
      el("td", { className: "mono" }, step.ok === false ? `failed: ${shorten(step.observation)}` : shorten(step.observation)),
      el("td", { className: "nowrap" }, step.duration_s ? `${Number(step.duration_s).toFixed(2)} s` : "")));
    const table = el("table", { className: "table steps-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "#"), el("th", {}, "Tool / step"), el("th", {}, "Input"),
        el("th", {}, "Result"), el("th", {}, "Time"))),
      el("tbody", {}, rows));
    this.stepsList.replaceChildren(el("div", { className: "table-scroll" }, table));
    const tools = shown.filter((step) => step.tool && (!step.kind || step.kind === "action")).length;
    this.stepsSummary.textContent = `Agent steps (${shown.length} step${shown.length === 1 ? "" : "s"}, ${tools} tool call${tools === 1 ? "" : "s"})`;
  }

  setSources(sources) {
    if (!sources || !sources.length) return;
    this.sources.hidden = false;
    this.sources.replaceChildren(el("h4", {}, "Sources"), el("ul", {}, sources.map(sourceItem)));
  }

  setStatus(text) {
    this.status.hidden = !text;
    this.status.textContent = text || "";
  }

  done() {
    if (this.stepsSummary.textContent === "Agent steps (running…)") this.stepsSummary.textContent = "Agent steps";
    this.flush();
  }
}

/** A stored message (GET /api/sessions/{id}) as a view. */
export function storedMessageView(message) {
  const view = new MessageView(message.role === "user" ? "user" : "assistant");
  view.setText(message.content || "");
  if (view.role === "assistant") {
    view.setMode(message.mode, message.reason);
    view.setSteps(message.steps, message.reasoning_content);
    view.setSources(message.sources);
    if (message.incomplete) view.setStatus("Stopped before the end.");
    view.done();
  }
  return view;
}
