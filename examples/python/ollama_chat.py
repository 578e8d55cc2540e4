"""Stream a chat answer with the `ollama` client:  python ollama_chat.py MODEL"""

from __future__ import annotations

import ollama

from _model import host, model

client = ollama.Client(host=host())
messages = [{"role": "user", "content": "Why is the sky blue? Answer in one sentence."}]
reply = ""
for part in client.chat(model(), messages=messages, stream=True, options={"temperature": 0, "num_predict": 64}):
    print(part.message.content, end="", flush=True)
    reply += part.message.content
print()

# the conversation goes on with the answer in it
messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "Say that in five words."}]
answer = client.chat(model(), messages=messages, options={"temperature": 0, "num_predict": 32})
print(answer.message.content)
print(f"[{answer.done_reason}: {answer.prompt_eval_count} prompt tokens, {answer.eval_count} answer tokens]")
