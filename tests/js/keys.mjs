// The ollama JavaScript client against a corral server with API keys (tests/test_clients_with_keys.py).
// Usage: node keys.mjs URL INFERENCE_KEY MODEL; prints one JSON object with what the client saw.
import { Ollama } from "ollama";

const [host, key, model] = process.argv.slice(2);
const client = new Ollama({ host, headers: { Authorization: `Bearer ${key}` } });

async function failure(call) {
  try {
    await call();
    return null;
  } catch (error) {
    return { status: error.status_code, error: error.error };
  }
}

const listed = await client.list();
const reply = await client.chat({
  model,
  messages: [{ role: "user", content: "Say hello." }],
  options: { num_predict: 8, temperature: 0 },
});
let streamed = "";
for await (const part of await client.generate({ model, prompt: "Count: 1, 2,", stream: true, options: { num_predict: 6 } })) {
  streamed += part.response;
}
console.log(JSON.stringify({
  models: listed.models.map((entry) => entry.name),
  chat: reply.message.content,
  streamed,
  without_key: await failure(() => new Ollama({ host }).list()),
  wrong_key: await failure(() => new Ollama({ host, headers: { Authorization: "Bearer wrong-key-0123456789abcdef" } }).list()),
  delete_with_inference_key: await failure(() => client.delete({ model })),
}));
