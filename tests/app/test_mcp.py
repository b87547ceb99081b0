"""`python app.py --mcp`: the app's main functions as MCP tools an AI agent can call."""
import ast
import asyncio
import base64
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import OFFLINE_ENV, ROOT, LaunchedApp

# gradio names each tool after the endpoint's handler.
TOOLS = {"show_classification": "classify", "show_feature_maps": "feature_maps",
         "start_training": "train", "run_comparison": "compare", "augment": "augment"}


def test_without_the_mcp_package_it_names_the_pip_command():
    # The package hidden from import, as on a machine without it (app.py stops before building).
    code = "import sys; sys.modules['mcp'] = None; import app; app.main(['--mcp'])"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**__import__("os").environ, **OFFLINE_ENV})
    assert result.returncode != 0
    assert 'pip install "mcp>=1.21,<2"' in result.stderr
    assert "Traceback" not in result.stderr


async def _tools_and_answer(url: str, image_path):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    image = "data:image/png;base64," + base64.b64encode(image_path.read_bytes()).decode()
    async with streamable_http_client(url) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            # The checkpoints are a list of the picker's values (their paths), as the schema says.
            choices = tools["show_classification"].inputSchema["properties"]["checkpoints"]["items"]["enum"]
            mnist = next(c for c in choices if c.endswith("mnist_cnn.safetensors"))
            answer = await session.call_tool("show_classification", {
                "image": image, "checkpoints": [mnist], "digit_mode": True})
    return tools, answer


@pytest.mark.slow
def test_an_agent_lists_the_main_tools_and_classifies_a_digit(tmp_path):
    pytest.importorskip("mcp", reason='the MCP package is not installed (pip install "mcp>=1.21,<2")')
    app = LaunchedApp(tmp_path, "--mcp")
    try:
        # In a thread of its own: after the browser tests, Playwright's sync API holds an event
        # loop in this one, where asyncio.run() refuses to start another.
        with ThreadPoolExecutor(1) as thread:
            tools, answer = thread.submit(asyncio.run, _tools_and_answer(
                app.url + "gradio_api/mcp/", ROOT / "examples" / "digit_7.png")).result()
    finally:
        app.close()
    # Only the main functions are tools: no Stop, no deleting runs.
    assert set(tools) == set(TOOLS)
    assert "checkpoint" in tools["show_classification"].description
    assert not answer.isError, answer.content
    texts = [item.text for item in answer.content if item.type == "text"]
    # gradio writes the outputs as Python writes them (str()): the first is the JSON results.
    results = ast.literal_eval(texts[0])[0]
    assert results[0]["checkpoint"] == "mnist_cnn"
    assert results[0]["top"][0]["label"] == "7 - seven", results[0]["top"][:3]
    assert results[0]["top"][0]["prob"] > 0.9
