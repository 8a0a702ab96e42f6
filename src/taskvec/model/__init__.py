"""The network side: loading a model, hooks on its blocks, the shared-prefix plan, KV caches, the extraction
engine, generation and patched runs. The only folder that touches transformers' internals."""
