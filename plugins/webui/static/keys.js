// The server's API key, when it asks for one (401): asked for in a dialog and kept in
// sessionStorage, so it lasts while this tab is open (reloads included) and no longer.

const STORAGE_KEY = "corral.apiKey";
let asking = null; // one dialog at a time, shared by every request that got a 401
let memoryKey = ""; // where the key stays when the browser refuses sessionStorage

export function savedKey() {
  try {
    return sessionStorage.getItem(STORAGE_KEY) || "";
  } catch (error) {
    return memoryKey;
  }
}

function saveKey(key) {
  memoryKey = key;
  try {
    if (key) sessionStorage.setItem(STORAGE_KEY, key);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch (error) { /* kept in memory only */ }
}

/** Show the key dialog with `message`; resolves to the key entered, or "" when cancelled. */
export function askForKey(message) {
  saveKey("");
  if (!asking) {
    asking = new Promise((resolve) => {
      const dialog = document.getElementById("key-dialog");
      const input = document.getElementById("key-input");
      document.getElementById("key-message").textContent = message;
      input.value = "";
      dialog.addEventListener("close", () => {
        const key = dialog.returnValue === "use" ? input.value.trim() : "";
        saveKey(key);
        asking = null;
        resolve(key);
      }, { once: true });
      dialog.returnValue = "";
      dialog.showModal();
      input.focus();
    });
  }
  return asking;
}
