// The documents panel: upload by drag and drop or picker with a real progress bar (XMLHttpRequest's
// upload progress; fetch has none), the server's own error message on failure, the list, delete.

import { authHeaders, checked, requestJson } from "./http.js";
import { $, el, when } from "./dom.js";
import { showError, showInfo } from "./toast.js";

const PAGE_SIZE = 200;

function uploadError(xhr) {
  try {
    const body = JSON.parse(xhr.responseText);
    if (body?.error?.message) return body.error.message;
  } catch {
    // not JSON: fall through to the status
  }
  if (xhr.status === 0) return "The upload was interrupted: the server cannot be reached.";
  if (xhr.status === 413) return "The file is larger than the server accepts (MAX_UPLOAD_MB).";
  return `The server answered ${xhr.status} ${xhr.statusText}`;
}

function setProgress(name, percent) {
  $("upload-status").hidden = false;
  $("upload-name").textContent = name;
  $("upload-progress").value = percent;
  $("upload-percent").textContent = `${Math.round(percent)}%`;
}

export function upload(file) {
  $("upload-error").textContent = "";
  setProgress(file.name, 0);
  const form = new FormData();
  form.append("file", file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/files/upload");
  for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
  xhr.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable) setProgress(file.name, (event.loaded / event.total) * 100);
  });
  xhr.upload.addEventListener("load", () => {
    setProgress(file.name, 100);
    $("upload-percent").textContent = "100% – reading and indexing…";
  });
  return new Promise((resolve) => {
    xhr.addEventListener("loadend", async () => {
      if (xhr.status === 200 || xhr.status === 201) {
        const record = JSON.parse(xhr.responseText);
        $("upload-percent").textContent = xhr.status === 201 ? "Done" : "Done (already uploaded)";
        showInfo(`${record.filename}: ${record.pages ?? 0} page(s), ${record.chunks ?? 0} chunk(s) indexed.`);
        await refreshDocuments();
      } else if (xhr.status === 401) {
        await checked(new Response(xhr.responseText, { status: 401 })).catch(() => {});
      } else {
        const message = uploadError(xhr);
        $("upload-error").textContent = `${file.name}: ${message}`;
        $("upload-percent").textContent = "Failed";
        showError(`Upload failed: ${message}`);
      }
      resolve(xhr.status);
    });
    xhr.send(form);
  });
}

function row(doc) {
  const remove = el("button", { type: "button", className: "small danger", ariaLabel: `Delete ${doc.filename}` }, "Delete");
  remove.addEventListener("click", async () => {
    remove.disabled = true;
    try {
      await requestJson(`/api/files/documents/${encodeURIComponent(doc.file_id)}`, { method: "DELETE" });
      showInfo(`${doc.filename} deleted.`);
    } catch (error) {
      showError(`Could not delete ${doc.filename}: ${error.message}`);
    }
    await refreshDocuments();
  });
  return el("tr", { dataset: { id: doc.file_id } },
    el("td", { className: "filename" }, doc.filename),
    el("td", {}, String(doc.pages ?? "")),
    el("td", {}, String(doc.chunks ?? "")),
    el("td", {}, el("span", { className: `badge status-${doc.status}` }, doc.status || "")),
    el("td", {}, when(doc.uploaded_at)),
    el("td", {}, remove));
}

export async function refreshDocuments() {
  try {
    const listing = await requestJson(`/api/files/documents?page=1&page_size=${PAGE_SIZE}`);
    $("document-rows").replaceChildren(...listing.data.map(row));
    $("no-documents").hidden = listing.data.length > 0;
  } catch (error) {
    showError(`Could not list documents: ${error.message}`);
  }
}

export function initDocuments() {
  const zone = $("dropzone");
  $("file-input").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (file) upload(file);
    event.target.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const [file] = event.dataTransfer.files;
    if (file) upload(file);
  });
}
