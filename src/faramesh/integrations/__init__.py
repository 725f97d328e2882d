"""Faramesh for agent frameworks. Each module needs its extra:

- `faramesh.integrations.langchain` — `pip install "faramesh[langchain]"`
- `faramesh.integrations.openai_agents` — `pip install "faramesh[openai-agents]"`
- `faramesh.integrations.mcp` — `pip install "faramesh[mcp]"` (and `faramesh mcp proxy`)
"""
