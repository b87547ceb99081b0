"""What an AI agent sees of the app: `python app.py --mcp` serves the app's main functions as MCP
tools (gradio's own MCP server, at /gradio_api/mcp/).

gradio makes a tool of every documented API endpoint. Only the main ones should be tools: an
agent has no use for Stop or for deleting a visitor's run, and every extra tool is one more to
choose from. So `expose_tools` leaves MCP_TOOLS documented and makes the other endpoints
"undocumented": gradio_client still calls them by name, they just leave the API page and the tool
list. The descriptions are what the agent reads to choose a tool and fill in its arguments.
"""
from __future__ import annotations

# endpoint (api_name) -> what the tool does, for an agent. gradio adds the parameters' names and
# types (and, for an image, how to pass one) from the endpoint itself.
MCP_TOOLS = {
    "classify": (
        "Classify an image with up to three trained checkpoints of Vision Lab. `image`: the image "
        "as an http(s) URL or a data:image/png;base64,... string. `checkpoints`: a list of "
        "values from the parameter's choices (checkpoint files): the one ending in "
        "mnist_cnn.safetensors knows handwritten digits (0-9), shapes_cnn.safetensors the "
        "synthetic shapes. `digit_mode`: true to prepare a photo of a digit the way MNIST "
        "was made (dark ink on light paper becomes a centred white digit). Returns first a "
        "list with, per checkpoint, every class with its probability, most likely first."),
    "feature_maps": (
        "Look inside a trained CNN checkpoint on one image: the feature maps of a layer, the "
        "first layer's filters, a Grad-CAM heat map of where the model looked, and its top-5 "
        "prediction. `image` as for classify; `layer`: a layer name (empty: the first one)."),
    "train": (
        "Train an image classifier and return its curves and test results. Keep it small: "
        "dataset \"shapes\" (synthetic, offline) or \"mnist\", subset_train of a few thousand "
        "images, model \"mlp\" or \"cnn\", a few epochs. Takes about a minute on a laptop CPU; "
        "the last output is a JSON summary (test_acc in [0, 1], history per epoch, checkpoint)."),
    "compare": (
        "Run one of the course's lessons: several runs on the same data over several seeds, with "
        "a results table and a verdict saying whether the lesson's claim held by more than the "
        "seed-to-seed spread. `lesson_name` e.g. \"MLP vs CNN\" or \"Learning curves: MLP vs "
        "CNN\"; `size_name` \"quick\" (seconds) or \"default\" (about two minutes)."),
    "augment": (
        "Preview data augmentation: an image and `count` augmented copies of it, with the "
        "torchvision code of the pipeline. `image` as for classify, or empty for a sample."),
}

PIP_COMMAND = 'pip install "mcp>=1.21,<2"'


def mcp_missing() -> str | None:
    """A sentence naming the pip command when the MCP package is missing, else None."""
    try:
        import mcp  # noqa: F401
    except ImportError:
        return (f"--mcp needs the MCP package, which is not installed: {PIP_COMMAND} "
                "(gradio's own extra, gradio[mcp], asks for the same package).")
    return None


def expose_tools(demo) -> list[str]:
    """Leave only MCP_TOOLS documented (and so made tools), with their descriptions; returns the
    endpoints that are tools."""
    tools = []
    for fn in demo.fns.values():
        if fn.api_visibility != "public":
            continue
        if fn.api_name in MCP_TOOLS:
            fn.api_description = MCP_TOOLS[fn.api_name]
            tools.append(fn.api_name)
        else:
            fn.api_visibility = "undocumented"
    return tools
