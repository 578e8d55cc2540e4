// Conversations kept in the browser's localStorage: a list, and which one is open.

const LIST_KEY = "corral.conversations";
const CURRENT_KEY = "corral.current";

function read(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key));
    return value ?? fallback;
  } catch (error) {
    return fallback;
  }
}

export function newConversation(model = "") {
  return {
    id: `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`,
    title: "",
    model,
    system: "",
    temperature: null,
    numCtx: null,
    messages: [],
    updated: Date.now(),
  };
}

export class Conversations {
  constructor() {
    const list = read(LIST_KEY, []);
    this.list = Array.isArray(list) ? list.filter((item) => item && item.id && Array.isArray(item.messages)) : [];
    this.currentId = read(CURRENT_KEY, null);
    if (!this.current) this.currentId = this.list[0]?.id ?? null;
  }

  get current() {
    return this.list.find((item) => item.id === this.currentId) ?? null;
  }

  /** Newest first. */
  sorted() {
    return [...this.list].sort((a, b) => b.updated - a.updated);
  }

  add(conversation) {
    this.list.push(conversation);
    this.currentId = conversation.id;
    this.save();
    return conversation;
  }

  open(id) {
    this.currentId = id;
    this.save();
  }

  remove(id) {
    this.list = this.list.filter((item) => item.id !== id);
    if (this.currentId === id) this.currentId = this.sorted()[0]?.id ?? null;
    this.save();
  }

  touch(conversation) {
    conversation.updated = Date.now();
    if (!conversation.title) {
      const first = conversation.messages.find((message) => message.role === "user");
      if (first) conversation.title = first.content.trim().split("\n")[0].slice(0, 60);
    }
    this.save();
  }

  save() {
    try {
      localStorage.setItem(LIST_KEY, JSON.stringify(this.list));
      localStorage.setItem(CURRENT_KEY, JSON.stringify(this.currentId));
    } catch (error) {
      console.warn("corral: could not save conversations", error);
    }
  }
}
