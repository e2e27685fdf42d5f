"""Test doubles and graphs for the client distribution's tests (no network, no mocks of our code).

`ScriptedChatModel` is a real langchain_core chat model: it goes through BaseChatModel's callback
machinery like any provider would, answers from a script, supports `bind_tools` (so the prebuilt
ReAct agent accepts it) and reports `usage_metadata` computed from the words it saw and wrote, so
token counts in spans are real numbers the tests can predict.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Sequence
from typing import Annotated, Any, TypedDict

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from pydantic import PrivateAttr


def count_words(messages: Sequence[BaseMessage]) -> int:
    return sum(len(str(m.content).split()) for m in messages)


class ScriptedChatModel(BaseChatModel):
    """Answers with the scripted messages in turn (the last one repeats)."""

    model: str = "fake-gpt-4o"
    script: list[AIMessage]
    _calls: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        return self  # the script already knows which tool calls to make

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self._lock:
            template = self.script[min(self._calls, len(self.script) - 1)]
            self._calls += 1
        input_tokens = count_words(messages)
        output_tokens = max(1, len(str(template.content).split()))
        message = AIMessage(
            content=template.content,
            tool_calls=template.tool_calls,
            usage_metadata={
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
            response_metadata={"model_name": f"{self.model}-2024", "finish_reason": "stop"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def echo_model(reply: str = "the refund window is 30 days") -> ScriptedChatModel:
    return ScriptedChatModel(script=[AIMessage(content=reply)])


@tool
def lookup_policy(topic: str) -> str:
    """Look up the company policy about a topic."""
    return f"policy for {topic}: refunds within 30 days"


def react_model() -> ScriptedChatModel:
    """First asks for the lookup_policy tool, then answers."""
    return ScriptedChatModel(
        script=[
            AIMessage(
                content="",
                tool_calls=[{"name": "lookup_policy", "args": {"topic": "refund"}, "id": "call-1"}],
            ),
            AIMessage(content="refunds are accepted within 30 days"),
        ]
    )


class RouterState(TypedDict, total=False):
    question: str
    route: str
    answer: str
    log: Annotated[list[str], operator.add]


def router_graph(model: BaseChatModel, name: str = "agent_router") -> Any:
    """planner -> (conditional) -> policy_lookup or small_talk -> END (LLM in policy_lookup)."""

    def planner(state: RouterState) -> dict[str, Any]:
        route = "policy" if "refund" in state["question"] else "chat"
        return {"route": route, "log": ["planner"]}

    def policy_lookup(state: RouterState) -> dict[str, Any]:
        reply = model.invoke(state["question"])
        return {"answer": str(reply.content), "log": ["policy_lookup"]}

    async def apolicy_lookup(state: RouterState) -> dict[str, Any]:
        reply = await model.ainvoke(state["question"])
        return {"answer": str(reply.content), "log": ["policy_lookup"]}

    def small_talk(state: RouterState) -> dict[str, Any]:
        return {"answer": "hello!", "log": ["small_talk"]}

    builder = StateGraph(RouterState)
    builder.add_node("planner", planner)
    # Sync and async bodies: ainvoke/astream run the coroutine, invoke/stream the function.
    builder.add_node("policy_lookup", RunnableLambda(policy_lookup, afunc=apolicy_lookup))
    builder.add_node("small_talk", small_talk)
    builder.add_edge(START, "planner")
    builder.add_conditional_edges(
        "planner",
        lambda s: s["route"],
        {"policy": "policy_lookup", "chat": "small_talk"},
    )
    builder.add_edge("policy_lookup", END)
    builder.add_edge("small_talk", END)
    return builder.compile(name=name)


def subgraph_app(model: BaseChatModel) -> Any:
    """outer: prepare -> research (a compiled subgraph: search -> summarize) -> END."""
    inner = StateGraph(MessagesState)
    inner.add_node("search", lambda s: {"messages": [("ai", "found 3 documents")]})
    inner.add_node("summarize", lambda s: {"messages": [model.invoke(s["messages"])]})
    inner.add_edge(START, "search")
    inner.add_edge("search", "summarize")
    inner.add_edge("summarize", END)
    research = inner.compile(name="research_graph")

    outer = StateGraph(MessagesState)
    outer.add_node("prepare", lambda s: {"messages": [("system", "be brief")]})
    outer.add_node("research", research)
    outer.add_edge(START, "prepare")
    outer.add_edge("prepare", "research")
    outer.add_edge("research", END)
    return outer.compile(name="outer_graph")


class NodeFailure(RuntimeError):
    pass


def failing_graph() -> Any:
    def ok(state: MessagesState) -> dict[str, Any]:
        return {"messages": [("ai", "fine so far")]}

    def boom(state: MessagesState) -> dict[str, Any]:
        raise NodeFailure("database unavailable")

    builder = StateGraph(MessagesState)
    builder.add_node("ok", ok)
    builder.add_node("boom", boom)
    builder.add_edge(START, "ok")
    builder.add_edge("ok", "boom")
    builder.add_edge("boom", END)
    return builder.compile(name="failing_graph")
