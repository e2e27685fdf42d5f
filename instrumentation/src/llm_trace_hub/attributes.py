"""Attribute names this distribution emits, in one place.

The LLM Trace Hub server maps exactly these names (OTel GenAI conventions, OpenInference's
``input.value``/``output.value`` and the ``langgraph.*`` names of the node panel); any other
OTel backend simply keeps them. Never rename one without changing the server's mapping.
"""

from __future__ import annotations

from typing import Final

# Our own, highest-precedence span type:
# llm, embedding, tool, retriever, chain, agent, node, judge, span.
SPAN_TYPE: Final = "tracehub.span.type"
AUTO_ENDED: Final = "tracehub.auto_ended"

INPUT_VALUE: Final = "input.value"
INPUT_MIME_TYPE: Final = "input.mime_type"
OUTPUT_VALUE: Final = "output.value"
OUTPUT_MIME_TYPE: Final = "output.mime_type"
MIME_JSON: Final = "application/json"
MIME_TEXT: Final = "text/plain"

USER_ID: Final = "user.id"
SESSION_ID: Final = "session.id"
DEPLOYMENT_ENVIRONMENT: Final = "deployment.environment.name"
SERVICE_NAME: Final = "service.name"

LANGGRAPH_GRAPH_NAME: Final = "langgraph.graph.name"
LANGGRAPH_RUN_ID: Final = "langgraph.run.id"
LANGGRAPH_NODE: Final = "langgraph.node"
LANGGRAPH_NODE_ID: Final = "langgraph.node.id"
LANGGRAPH_NODE_TYPE: Final = "langgraph.node.type"
LANGGRAPH_STEP: Final = "langgraph.step"
LANGGRAPH_TRIGGERS: Final = "langgraph.triggers"
LANGGRAPH_TASK_ID: Final = "langgraph.task.id"
LANGGRAPH_CHECKPOINT_NS: Final = "langgraph.checkpoint_ns"

GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"

# Span event the SDK facade's log_event() adds; the hub decodes its metadata (JSON object text).
LOG_EVENT_NAME: Final = "log"
LOG_MESSAGE: Final = "message"
LOG_METADATA: Final = "metadata"
LOG_LEVEL: Final = "level"
