// The one place errors are shown: a banner fixed at the top of the window (role=alert), so an error is
// never below the fold and never silent.

const toast = () => document.getElementById("toast");
let timer = null;

export function showError(message) {
  document.getElementById("toast-text").textContent = String(message || "Something went wrong.");
  toast().hidden = false;
  toast().classList.remove("info");
  clearTimeout(timer);
}

export function showInfo(message) {
  showError(message);
  toast().classList.add("info");
  timer = setTimeout(hideToast, 4000);
}

export function hideToast() {
  toast().hidden = true;
}

document.getElementById("toast-close").addEventListener("click", hideToast);
