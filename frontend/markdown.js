// Model output to safe HTML: marked renders Markdown (tables, code fences), DOMPurify removes anything
// that could run script or load remote content. The page's CSP (script-src 'self', img-src 'self' data:)
// backs this up; this module is the first line.

import { marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.js";
import { copyText, el } from "./dom.js";

marked.setOptions({ gfm: true, breaks: true });

const SAFE_LINK = /^(https?:|mailto:)/i;

// Model output has no business loading anything, not even from this server (a GET it chose): inline
// data images only.
const INLINE_IMAGE = /^data:image\/(png|gif|jpeg|webp);/i;

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.hasAttribute("src") && !INLINE_IMAGE.test(node.getAttribute("src").trim())) node.removeAttribute("src");
  if (node.hasAttribute("srcset")) node.removeAttribute("srcset");
  if (node.tagName === "A") {
    const href = node.getAttribute("href") || "";
    if (!SAFE_LINK.test(href.trim())) node.removeAttribute("href");
    else {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
  } else if (node.hasAttribute("href")) {
    node.removeAttribute("href");
  }
});

const PURIFY = {
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed", "link",
                "meta", "base", "svg", "math", "video", "audio", "source", "picture"],
  FORBID_ATTR: ["style", "action", "formaction", "xlink:href", "background", "poster"],
  ALLOW_DATA_ATTR: false,
};

/** Sanitised HTML for `text`; also used alone by tests through the page. */
export function safeHtml(text) {
  return DOMPurify.sanitize(marked.parse(String(text ?? "")), PURIFY);
}

/** Renders `text` into `container`, with a copy button on each code block. */
export function renderMarkdown(container, text) {
  container.innerHTML = safeHtml(text);
  for (const pre of container.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    const button = el("button", { type: "button", className: "copy-code small", textContent: "Copy" });
    button.addEventListener("click", () => copyText((code || pre).textContent, button));
    const wrapper = el("div", { className: "code-block" });
    pre.replaceWith(wrapper);
    wrapper.append(button, pre);
  }
  for (const table of container.querySelectorAll("table")) {
    const wrapper = el("div", { className: "table-scroll" });
    table.replaceWith(wrapper);
    wrapper.append(table);
  }
}
