// The server's Ollama API, called from the page's own origin, and errors put in plain words.

import { askForKey, savedKey } from "./keys.js";

/** An error with a message written for a person; `detail` keeps the server's own words. */
export class FriendlyError extends Error {
  constructor(message, detail = "") {
    super(message);
    this.name = "FriendlyError";
    this.detail = detail;
  }
}

const UNREACHABLE = () =>
  `Cannot reach the corral server at ${location.host}. Is "corral serve" still running? ` +
  "Start it again, then press Send: your message is still in the box.";

/** Turn an Ollama error (status + {"error": ...}) into a FriendlyError. */
export function explain(status, serverMessage, model = "") {
  const text = serverMessage || `the server answered ${status}`;
  const notFound = /model ["'](.+?)["'] not found/.exec(text);
  if (status === 404 && notFound) {
    return new FriendlyError(
      `The model "${notFound[1]}" is not installed on this server. ` +
      "Pull it in the Models panel, or pick another model above.", text);
  }
  if (status === 403 && /API key/.test(text)) {
    return new FriendlyError(
      "Your API key may only chat with models and list them: pulling and deleting need a full key.", text);
  }
  if (status === 503) {
    return new FriendlyError("The server is busy with other requests. Wait a moment and try again.", text);
  }
  if (model && /invalid (gguf|model)|fail(ed)? to load|could not load|runner|load model/i.test(text)) {
    const damaged = /invalid (gguf|model)/i.test(text)
      ? " Its file may be damaged or incomplete: pull or create it again." : "";
    return new FriendlyError(`The model "${model}" could not be loaded.${damaged} Details: ${text}`, text);
  }
  if (status >= 500 && model) {
    return new FriendlyError(`The model "${model}" could not answer: ${text}`, text);
  }
  return new FriendlyError(`The server refused the request: ${text}`, text);
}

const NEEDS_KEY = "This server needs an API key. Ask its operator for one.";
const WRONG_KEY = "The server did not accept that API key. Check it and enter it again.";

/** fetch() with the API key, asking for one (and trying again) while the server answers 401. */
async function send(path, { method = "GET", body, signal, model } = {}) {
  let response;
  for (;;) {
    const key = savedKey();
    const headers = body === undefined ? {} : { "Content-Type": "application/json" };
    if (key) headers.Authorization = `Bearer ${key}`;
    try {
      response = await fetch(path, {
        method,
        signal,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new FriendlyError(UNREACHABLE(), String(error));
    }
    if (response.status !== 401) break;
    if (!(await askForKey(key ? WRONG_KEY : NEEDS_KEY))) {
      throw new FriendlyError(`${NEEDS_KEY} Reload the page to enter it.`, "401");
    }
  }
  if (!response.ok) {
    let message = "";
    try {
      message = (await response.json()).error || "";
    } catch (error) { /* not JSON (e.g. a proxy's page) */ }
    throw explain(response.status, message, model);
  }
  return response;
}

export async function getJSON(path) {
  return (await send(path)).json();
}

export async function deleteModel(name) {
  await send("/api/delete", { method: "DELETE", body: { model: name } });
}

/**
 * POST an Ollama streaming endpoint and call `onLine` with each NDJSON object.
 * A `{"error": ...}` line (a failure after the stream started) throws a FriendlyError.
 */
export async function stream(path, body, { signal, onLine, model } = {}) {
  const response = await send(path, { method: "POST", body, signal, model });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  const handle = (line) => {
    if (!line.trim()) return;
    const value = JSON.parse(line);
    if (value.error) throw explain(500, value.error, model);
    onLine(value);
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        handle(buffered.slice(0, newline));
        buffered = buffered.slice(newline + 1);
      }
    }
  } catch (error) {
    if (error.name === "AbortError" || error instanceof FriendlyError) throw error;
    throw new FriendlyError(
      `The connection to the server broke off (${error.message || error}). Is "corral serve" still running?`,
      String(error));
  }
  handle(buffered + decoder.decode());
}

export function humanSize(bytes) {
  if (!Number.isFinite(bytes) || bytes <= 0) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let index = 0;
  while (bytes >= 1000 && index < units.length - 1) {
    bytes /= 1000;
    index += 1;
  }
  return `${bytes >= 100 || index === 0 ? Math.round(bytes) : bytes.toFixed(1)} ${units[index]}`;
}
