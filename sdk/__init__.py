"""corral's software development kit: toolkits plugins share, beyond the records and protocols of
``corral`` itself.

- ``corral.sdk.http``: Quart frontends (JSON bodies, Ollama NDJSON and OpenAI SSE streams, errors,
  the kernel of a request)
- ``corral.sdk.hub``: model sources that download files from a hub or a package index
- ``corral.sdk.transport``: readable reasons for network failures
- ``corral.sdk.outbound``: the outbound policy for what a source fetches (where it may connect,
  which redirects it follows, how much of an answer it reads, what of it a client sees)
- ``corral.sdk.app``: hosting the kernel (the command line builds one; so can an application)
- ``corral.sdk.gguf``: reading GGUF metadata with limits
- ``corral.sdk.modelfile``: parsing and writing Modelfiles
- ``corral.sdk.options``: Ollama's model options, their types and rules
- ``corral.sdk.gofmt``: printing values as Go does (floats, quoted strings, JSON)
- ``corral.sdk.templates``: Ollama's Go prompt templates
- ``corral.sdk.convert``: safetensors checkpoints to GGUF
- ``corral.sdk.runner``: a model served by an engine in a process of its own (a child process, a
  Ray actor), over any transport: the client, the runner loop, the pipe transport, warm spares

Import the submodule you need; this package imports none of them, so ``import corral.sdk`` is free.
See docs/plugin_hooks.md.
"""
