// Talks to the API on the same origin (run_frontend.py or nginx forward it): the bearer token, the
// OpenAI error shape turned into words, and a 401 that sends the page back to sign-in.

const TOKEN_KEY = "token";
let onExpired = () => {};

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Called with a message when the server no longer accepts the sign-in. */
export function whenSignInExpires(handler) {
  onExpired = handler;
}

export function authHeaders() {
  const value = token();
  return value ? { Authorization: `Bearer ${value}` } : {};
}

/** The server's own message from an error response, or the status in words. */
export async function errorMessage(response) {
  const fallback = `The server answered ${response.status} ${response.statusText || ""}`.trim();
  try {
    const body = await response.json();
    return body?.error?.message || body?.detail || fallback;
  } catch {
    return response.status === 502 || response.status === 504
      ? "The API server cannot be reached. Is it running?" : fallback;
  }
}

/** Checks a response: a 401 on a signed-in page ends the sign-in, any other failure throws its message. */
export async function checked(response) {
  if (response.status === 401 && token()) {
    setToken(null);
    onExpired("Your sign-in expired. Please sign in again.");
    throw new ApiError("Your sign-in expired.", 401);
  }
  if (!response.ok) throw new ApiError(await errorMessage(response), response.status);
  return response;
}

/** fetch with the token; JSON bodies in and out. Network failures become words too. */
export async function request(path, { method = "GET", json, headers = {}, signal } = {}) {
  const init = { method, headers: { ...authHeaders(), ...headers }, signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("The server cannot be reached. Check that it is running.", 0);
  }
  return checked(response);
}

export async function requestJson(path, options) {
  const response = await request(path, options);
  return response.json();
}
