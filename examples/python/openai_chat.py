"""Use corral through the `openai` client and /v1:  python openai_chat.py MODEL

Any API key is accepted; corral does not check it.
"""

from __future__ import annotations

from openai import OpenAI

from _model import host, model

client = OpenAI(base_url=f"{host()}/v1", api_key="corral")
print("models:", ", ".join(m.id for m in client.models.list()))

messages = [{"role": "system", "content": "You are concise."},
            {"role": "user", "content": "Name the largest planet in the solar system."}]
completion = client.chat.completions.create(model=model(), messages=messages, temperature=0, max_tokens=48)
print(completion.choices[0].message.content)
print(f"[{completion.choices[0].finish_reason}, {completion.usage.total_tokens} tokens]")

stream = client.chat.completions.create(model=model(), messages=messages, temperature=0, max_tokens=48,
                                        stream=True, stream_options={"include_usage": True})
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
    elif chunk.usage:
        print(f"\n[streamed {chunk.usage.completion_tokens} tokens]")

embedding = client.embeddings.create(model=model(), input="The largest planet is Jupiter.")
print(f"embedding of {len(embedding.data[0].embedding)} dimensions")
