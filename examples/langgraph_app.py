"""A small LangGraph app traced into LLM Trace Hub; prints where to read the trace.

    pip install -e 'instrumentation[langgraph]'
    tracehub serve &
    python examples/langgraph_app.py [BASE_URL] [API_KEY] ["question"]

``llm_trace_hub.configure()`` is the only tracing line an application needs: it exports OTLP to
the hub and instruments LangGraph. The chat model here is a local fake with a script (no network,
no API key) that still reports token usage, so the hub shows models, tokens, node states and the
tool call the way it would for a real provider. It exits 1 when the spans did not reach the hub.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import llm_trace_hub
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from llm_trace_hub import HubSettings
from opentelemetry import trace


class ScriptedChat(BaseChatModel):
    """Asks for the refund-policy tool once, then answers from the tool's result."""

    model: str = "demo-gpt-mini"

    @property
    def _llm_type(self) -> str:
        return "scripted-demo"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChat:
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        last = messages[-1]
        if last.type == "tool":
            reply = AIMessage(f"According to our policy: {last.content}")
        else:
            reply = AIMessage(
                "",
                tool_calls=[
                    {"name": "refund_policy", "args": {"region": "KR"}, "id": "call-refund"}
                ],
            )
        words_in = sum(len(str(m.content).split()) for m in messages)
        words_out = max(1, len(str(reply.content).split()))
        reply.usage_metadata = {
            "input_tokens": words_in,
            "output_tokens": words_out,
            "total_tokens": words_in + words_out,
        }
        reply.response_metadata = {"model_name": self.model, "finish_reason": "stop"}
        return ChatResult(generations=[ChatGeneration(message=reply)])


@tool
def refund_policy(region: str) -> str:
    """Return the refund policy for a region."""
    return f"refunds in {region} are accepted within 14 days of delivery"


def build_graph() -> Any:
    model = ScriptedChat()

    def guard(state: MessagesState) -> dict[str, Any]:
        text = str(state["messages"][-1].content)
        return {"messages": [AIMessage("blocked")]} if "password" in text else {}

    def assistant(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("guard", guard)
    builder.add_node("assistant", assistant)
    builder.add_node("tools", ToolNode([refund_policy]))
    builder.add_edge(START, "guard")
    builder.add_conditional_edges(
        "guard", lambda s: END if s["messages"][-1].content == "blocked" else "assistant"
    )
    builder.add_conditional_edges("assistant", tools_condition)
    builder.add_edge("tools", "assistant")
    return builder.compile(name="support_graph")


def main() -> int:
    # Unset arguments fall back to LLM_TRACE_HUB_BASE_URL / LLM_TRACE_HUB_API_KEY, then defaults.
    args = [*sys.argv[1:], None, None]
    hub = HubSettings.from_env(args[0], args[1])
    question = args[2] or "환불 규정 알려줘"
    provider = llm_trace_hub.configure(
        hub.base_url, hub.api_key, service_name="langgraph-example", environment="dev"
    )
    graph = build_graph()
    tracer = trace.get_tracer("examples.langgraph_app")
    # A request span with user/session, as a web handler would open: the graph nests under it.
    with tracer.start_as_current_span(
        "support-request",
        attributes={
            "user.id": "user-42",
            "session.id": "session-1",
            "input.value": question,
            "tracehub.span.type": "chain",
        },
    ) as request:
        result = graph.invoke({"messages": [HumanMessage(question)]})
        answer = str(result["messages"][-1].content)
        request.set_attribute("output.value", answer)
    print(answer)
    # configure()'s provider says False when spans did not reach the hub (down, key refused).
    if not provider.force_flush():
        print(f"error: the spans did not reach {hub.base_url}", file=sys.stderr)
        return 1
    trace_id = format(request.get_span_context().trace_id, "032x")
    print(f"trace: {hub.base_url}/api/v1/traces/{trace_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
