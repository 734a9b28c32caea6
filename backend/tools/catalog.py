"""The tool catalogue: which tools the server offers, each registered with one line."""

from __future__ import annotations

from backend.config import Settings
from backend.rag.ports import DocumentRetriever
from backend.tools.data_analysis import DataAnalysisTool
from backend.tools.internet.weather import WeatherTool
from backend.tools.internet.web_search import WebSearchTool
from backend.tools.internet.wikipedia_tool import WikipediaTool
from backend.tools.math.math_calc import MathCalcTool
from backend.tools.rag_retrieval import RagRetrievalTool
from backend.tools.registry import ToolRegistry
from backend.tools.sandbox.python_code import PythonCodeTool
from backend.tools.sql.sql_query import SqlQueryTool


def build_tool_registry(settings: Settings, retriever: DocumentRetriever | None = None) -> ToolRegistry:
    """Every tool, built from the settings; `retriever` arrives with the RAG issue (until then: unavailable)."""
    registry = ToolRegistry(timeout_s=settings.tool_timeout_s, data_dir=settings.data_dir)
    registry.register(WebSearchTool(settings))
    registry.register(WikipediaTool(settings))
    registry.register(WeatherTool(settings))
    registry.register(RagRetrievalTool(retriever))
    registry.register(DataAnalysisTool())
    registry.register(PythonCodeTool(settings))
    registry.register(MathCalcTool(settings))
    registry.register(SqlQueryTool(settings))
    return registry
