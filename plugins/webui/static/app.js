// The chat page: conversations, streaming answers, the settings and models panels, the theme.
import { FriendlyError, deleteModel, getJSON, humanSize, stream } from "./api.js";
import { Conversations, newConversation } from "./conversations.js";
import { renderMarkdown } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const ui = {
  sidebar: $("sidebar"), conversations: $("conversations"), newChat: $("new-chat"),
  openSidebar: $("open-sidebar"), closeSidebar: $("close-sidebar"),
  modelSelect: $("model-select"), themeToggle: $("theme-toggle"),
  banner: $("banner"), bannerText: $("banner-text"), bannerClose: $("banner-close"),
  messages: $("messages"), empty: $("empty"),
  composer: $("composer"), prompt: $("prompt"), send: $("send"), stop: $("stop"),
  settingsDialog: $("settings-dialog"), openSettings: $("open-settings"),
  system: $("system-prompt"), temperature: $("temperature"), numCtx: $("num-ctx"),
  modelsDialog: $("models-dialog"), openModels: $("open-models"),
  installed: $("installed"), running: $("running"), modelsError: $("models-error"),
  pullName: $("pull-name"), pullStart: $("pull-start"), pullInsecure: $("pull-insecure"),
  pullProgress: $("pull-progress"), pullBar: $("pull-bar"), pullStatus: $("pull-status"),
};

const MODEL_KEY = "corral.model";
const THEME_KEY = "corral.theme";
const store = new Conversations();
let installedModels = [];
let generation = null; // {controller, conversation} while an answer streams
let runningTimer = null;

// --- helpers ---------------------------------------------------------------------------------

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showBanner(message) {
  ui.bannerText.textContent = message;
  ui.banner.hidden = false;
}

function hideBanner() {
  ui.banner.hidden = true;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (error) {
    // Plain http on another host is not a secure context: no Clipboard API there.
    const area = element("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    return copied;
  }
}

function flash(button, text) {
  const original = button.textContent;
  button.textContent = text;
  setTimeout(() => { button.textContent = original; }, 1500);
}

function autoGrow() {
  ui.prompt.style.height = "auto";
  ui.prompt.style.height = `${Math.min(ui.prompt.scrollHeight, 240)}px`;
}

function restoreTyped(text) {
  const now = ui.prompt.value;
  ui.prompt.value = now.trim() ? `${text}\n${now}` : text;
  autoGrow();
  ui.prompt.focus();
}

function selectedModel() {
  return ui.modelSelect.value;
}

function currentOrNew() {
  return store.current ?? store.add(newConversation(selectedModel()));
}

// --- the theme -------------------------------------------------------------------------------

function effectiveTheme() {
  const chosen = document.documentElement.dataset.theme;
  if (chosen) return chosen;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function showThemeButton() {
  const other = effectiveTheme() === "dark" ? "light" : "dark";
  ui.themeToggle.title = `Switch to the ${other} theme`;
  ui.themeToggle.setAttribute("aria-label", ui.themeToggle.title);
}

ui.themeToggle.addEventListener("click", () => {
  const next = effectiveTheme() === "dark" ? "light" : "dark";
  document.documentElement.dataset.theme = next;
  try { localStorage.setItem(THEME_KEY, next); } catch (error) { /* not kept */ }
  showThemeButton();
});
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", showThemeButton);

// --- models ----------------------------------------------------------------------------------

async function loadModels() {
  try {
    installedModels = (await getJSON("/api/tags")).models ?? [];
    hideBanner();
  } catch (error) {
    showBanner(error.message);
    installedModels = [];
  }
  fillModelSelect();
}

function fillModelSelect() {
  const names = installedModels.map((model) => model.name);
  const wanted = store.current?.model || localStorage.getItem(MODEL_KEY) || names[0] || "";
  ui.modelSelect.replaceChildren();
  if (!names.length && !wanted) {
    ui.modelSelect.append(new Option("No models: pull one in the Models panel", ""));
  }
  for (const name of names) ui.modelSelect.append(new Option(name, name));
  if (wanted && !names.includes(wanted)) {
    ui.modelSelect.append(new Option(`${wanted} (not installed)`, wanted));
  }
  ui.modelSelect.value = wanted;
}

ui.modelSelect.addEventListener("change", () => {
  const model = selectedModel();
  try { localStorage.setItem(MODEL_KEY, model); } catch (error) { /* not kept */ }
  const conversation = store.current;
  if (conversation && !generation) {
    conversation.model = model;
    store.save();
    renderSidebar();
  }
});

// --- the conversation list -------------------------------------------------------------------

function renderSidebar() {
  ui.conversations.replaceChildren();
  for (const conversation of store.sorted()) {
    const item = element("li", "conversation");
    if (conversation.id === store.currentId) item.classList.add("active");
    const open = element("button", "conversation-open");
    open.type = "button";
    open.append(element("span", "conversation-title", conversation.title || "New chat"),
      element("span", "conversation-model", conversation.model || ""));
    open.addEventListener("click", () => {
      if (generation) return;
      store.open(conversation.id);
      fillModelSelect();
      renderSidebar();
      renderConversation();
      ui.sidebar.classList.remove("open");
    });
    const remove = element("button", "icon-button conversation-delete", "✕");
    remove.type = "button";
    remove.title = "Delete this conversation";
    remove.setAttribute("aria-label", remove.title);
    remove.addEventListener("click", () => {
      if (generation?.conversation === conversation) return;
      store.remove(conversation.id);
      fillModelSelect();
      renderSidebar();
      renderConversation();
    });
    item.append(open, remove);
    ui.conversations.append(item);
  }
}

ui.newChat.addEventListener("click", () => {
  if (generation) return;
  const current = store.current;
  if (!current || current.messages.length) store.add(newConversation(selectedModel()));
  renderSidebar();
  renderConversation();
  ui.sidebar.classList.remove("open");
  ui.prompt.focus();
});
ui.openSidebar.addEventListener("click", () => ui.sidebar.classList.add("open"));
ui.closeSidebar.addEventListener("click", () => ui.sidebar.classList.remove("open"));

// --- messages --------------------------------------------------------------------------------

function messageElement(conversation, message, index) {
  const node = element("article", `message ${message.role}`);
  const body = element("div", "content");
  node.append(body);
  if (message.role === "assistant") {
    renderMarkdown(body, message.content);
    addCodeCopyButtons(body);
    node.append(messageActions(conversation, message, index));
  } else {
    body.textContent = message.content;
  }
  return node;
}

function messageActions(conversation, message, index) {
  const actions = element("div", "actions");
  if (message.stopped) actions.append(element("span", "note", "stopped"));
  const copy = element("button", "button small", "Copy");
  copy.type = "button";
  copy.addEventListener("click", async () => flash(copy, (await copyText(message.content)) ? "Copied" : "Copy failed"));
  actions.append(copy);
  if (index === conversation.messages.length - 1) {
    const again = element("button", "button small", "Regenerate");
    again.type = "button";
    again.addEventListener("click", () => regenerate(conversation));
    actions.append(again);
  }
  return actions;
}

function addCodeCopyButtons(body) {
  for (const pre of body.querySelectorAll("pre")) {
    const button = element("button", "button small code-copy", "Copy");
    button.type = "button";
    button.addEventListener("click", async () => {
      flash(button, (await copyText(pre.querySelector("code")?.textContent ?? pre.textContent)) ? "Copied" : "Copy failed");
    });
    pre.append(button);
  }
}

function renderConversation() {
  const conversation = store.current;
  ui.messages.replaceChildren(ui.empty);
  ui.empty.hidden = Boolean(conversation?.messages.length);
  if (!conversation) return;
  conversation.messages.forEach((message, index) => {
    ui.messages.append(messageElement(conversation, message, index));
  });
  scrollToEnd();
}

function showError(message) {
  const node = element("div", "message error");
  node.setAttribute("role", "alert");
  node.append(element("div", "content", message));
  ui.messages.append(node);
  scrollToEnd();
}

function scrollToEnd() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

// --- chatting --------------------------------------------------------------------------------

function requestBody(conversation) {
  const messages = conversation.messages.map(({ role, content }) => ({ role, content }));
  if (conversation.system.trim()) messages.unshift({ role: "system", content: conversation.system });
  const options = {};
  if (conversation.temperature !== null && conversation.temperature !== "") options.temperature = Number(conversation.temperature);
  if (conversation.numCtx) options.num_ctx = Number(conversation.numCtx);
  return { model: conversation.model, messages, stream: true, options };
}

function setGenerating(active) {
  ui.send.hidden = active;
  ui.stop.hidden = !active;
  ui.modelSelect.disabled = active;
}

/** Stream an answer to the conversation's last user message. Returns whether it succeeded. */
async function answer(conversation) {
  const controller = new AbortController();
  generation = { controller, conversation };
  setGenerating(true);
  const reply = { role: "assistant", content: "" };
  const node = element("article", "message assistant streaming");
  const body = element("div", "content");
  body.append(element("span", "thinking", "…"));
  node.append(body);
  ui.messages.append(node);
  scrollToEnd();
  let frame = 0;
  const paint = () => {
    frame = 0;
    renderMarkdown(body, reply.content);
    scrollToEnd();
  };
  try {
    await stream("/api/chat", requestBody(conversation), {
      signal: controller.signal,
      model: conversation.model,
      onLine(line) {
        if (line.message?.content) {
          reply.content += line.message.content;
          if (!frame) frame = requestAnimationFrame(paint);
        }
      },
    });
  } catch (error) {
    if (error.name !== "AbortError") {
      cancelAnimationFrame(frame);
      node.remove();
      showError(error instanceof FriendlyError ? error.message : `Something went wrong: ${error.message || error}`);
      return false;
    }
    reply.stopped = true;
  } finally {
    generation = null;
    setGenerating(false);
  }
  cancelAnimationFrame(frame);
  conversation.messages.push(reply);
  store.touch(conversation);
  renderConversation();
  renderSidebar();
  return true;
}

async function sendMessage(text) {
  if (generation || !text.trim()) return;
  const model = selectedModel();
  if (!model) {
    showError("Pick a model first. If the list is empty, pull one in the Models panel.");
    return;
  }
  const conversation = currentOrNew();
  conversation.model = model;
  conversation.messages.push({ role: "user", content: text });
  ui.prompt.value = "";
  autoGrow();
  store.touch(conversation);
  renderSidebar();
  renderConversation();
  const ok = await answer(conversation);
  if (!ok) {
    // Nothing typed is lost: the message goes back into the box, ready to send again.
    conversation.messages.pop();
    if (!conversation.messages.length) conversation.title = "";
    store.touch(conversation);
    restoreTyped(text);
    renderSidebar();
    const error = ui.messages.querySelector(".message.error");
    renderConversation();
    if (error) ui.messages.append(error);
    loadModels(); // a model deleted meanwhile shows as "(not installed)"
  }
}

async function regenerate(conversation) {
  if (generation) return;
  if (conversation.messages.at(-1)?.role === "assistant") conversation.messages.pop();
  conversation.model = selectedModel() || conversation.model;
  store.touch(conversation);
  renderConversation();
  await answer(conversation);
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  sendMessage(ui.prompt.value);
});
ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendMessage(ui.prompt.value);
  }
});
ui.prompt.addEventListener("input", autoGrow);
ui.stop.addEventListener("click", () => generation?.controller.abort());
ui.bannerClose.addEventListener("click", hideBanner);

// --- conversation settings -------------------------------------------------------------------

ui.openSettings.addEventListener("click", () => {
  const conversation = currentOrNew();
  ui.system.value = conversation.system;
  ui.temperature.value = conversation.temperature ?? "";
  ui.numCtx.value = conversation.numCtx ?? "";
  renderSidebar();
  ui.settingsDialog.showModal();
});

function saveSettings() {
  const conversation = store.current;
  if (!conversation) return;
  conversation.system = ui.system.value;
  conversation.temperature = ui.temperature.value === "" ? null : Number(ui.temperature.value);
  conversation.numCtx = ui.numCtx.value === "" ? null : Math.round(Number(ui.numCtx.value));
  store.save();
}

for (const field of [ui.system, ui.temperature, ui.numCtx]) field.addEventListener("input", saveSettings);

// --- the models panel ------------------------------------------------------------------------

function modelRow(name, detail, onDelete) {
  const item = element("li", "model-row");
  item.append(element("span", "model-name", name), element("span", "model-detail", detail));
  if (onDelete) {
    const remove = element("button", "button small danger", "Delete");
    remove.type = "button";
    remove.setAttribute("aria-label", `Delete ${name}`);
    remove.addEventListener("click", onDelete);
    item.append(remove);
  }
  return item;
}

async function refreshInstalled() {
  await loadModels();
  ui.installed.replaceChildren();
  if (!installedModels.length) ui.installed.append(element("li", "hint", "No models installed."));
  for (const model of installedModels) {
    const detail = [model.details?.parameter_size, model.details?.quantization_level, humanSize(model.size)]
      .filter(Boolean).join(" · ");
    ui.installed.append(modelRow(model.name, detail, async () => {
      if (!confirm(`Delete the model "${model.name}" from this server?`)) return;
      let failure = "";
      try {
        await deleteModel(model.name);
      } catch (error) {
        failure = error.message;
      }
      await refreshInstalled();
      await refreshRunning();
      // shown in the panel, over which the page's banner would be hidden
      ui.modelsError.textContent = failure;
      ui.modelsError.hidden = !failure;
    }));
  }
}

async function refreshRunning() {
  let models;
  try {
    models = (await getJSON("/api/ps")).models ?? [];
  } catch (error) {
    ui.running.replaceChildren(element("li", "hint", error.message));
    return;
  }
  ui.running.replaceChildren();
  if (!models.length) ui.running.append(element("li", "hint", "No model is loaded right now."));
  for (const model of models) {
    const until = new Date(model.expires_at);
    const years = (until - Date.now()) / 3.15e10;
    const expires = years > 100 ? "stays loaded" : `until ${until.toLocaleTimeString()}`;
    ui.running.append(modelRow(model.name, [humanSize(model.size), expires].filter(Boolean).join(" · ")));
  }
}

ui.openModels.addEventListener("click", () => {
  refreshInstalled();
  refreshRunning();
  clearInterval(runningTimer);
  runningTimer = setInterval(refreshRunning, 3000);
  ui.modelsDialog.showModal();
});
ui.modelsDialog.addEventListener("close", () => {
  clearInterval(runningTimer);
  ui.modelsError.hidden = true;
});

async function pull() {
  const name = ui.pullName.value.trim();
  if (!name) return;
  ui.pullStart.disabled = true;
  ui.pullProgress.hidden = false;
  ui.pullProgress.classList.remove("failed");
  ui.pullBar.removeAttribute("value");
  ui.pullStatus.textContent = `Pulling ${name}…`;
  const layers = new Map(); // digest -> {total, completed}
  let pulled = null;
  try {
    const body = { model: name, stream: true };
    if (ui.pullInsecure.checked) body.insecure = true;
    await stream("/api/pull", body, {
      onLine(line) {
        if (line.digest && line.total) {
          layers.set(line.digest, { total: line.total, completed: line.completed ?? 0 });
          let total = 0;
          let completed = 0;
          for (const layer of layers.values()) {
            total += layer.total;
            completed += layer.completed;
          }
          ui.pullBar.value = total ? completed / total : 0;
          ui.pullStatus.textContent = `Downloading ${name}: ${humanSize(completed) || "0 B"} of ${humanSize(total)} ` +
            `(${Math.floor((100 * completed) / total)}%)`;
        } else if (line.status) {
          ui.pullStatus.textContent = line.status === "success" ? `${name} is ready.` : `${name}: ${line.status}`;
          if (line.status === "success") ui.pullBar.value = 1;
        }
      },
    });
    ui.pullName.value = "";
    pulled = name.slice(name.lastIndexOf("/") + 1).includes(":") ? name : `${name}:latest`;
  } catch (error) {
    ui.pullProgress.classList.add("failed");
    ui.pullBar.value = 0;
    const detail = error.detail || error.message;
    ui.pullStatus.textContent = /file does not exist|not found/i.test(detail)
      ? `The registry has no model "${name}": check the name and the tag. (${detail})`
      : `Could not pull "${name}": ${detail}`;
  } finally {
    ui.pullStart.disabled = false;
  }
  if (pulled && !generation && !store.current?.messages.length) {
    // nothing said yet: chat with the model just pulled
    try { localStorage.setItem(MODEL_KEY, pulled); } catch (error) { /* not kept */ }
    if (store.current) store.current.model = pulled;
    store.save();
    renderSidebar();
  }
  await refreshInstalled();
}

ui.pullStart.addEventListener("click", pull);
ui.pullName.addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    event.preventDefault();
    pull();
  }
});

// --- start -----------------------------------------------------------------------------------

showThemeButton();
renderSidebar();
renderConversation();
loadModels();
window.addEventListener("focus", () => { if (!generation) loadModels(); });
document.documentElement.dataset.ready = "true";
