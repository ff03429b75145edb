"""The ``echo`` process (entry point ``echo``): returns its input, for clients and tests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gdmio.process import JobContext, OutputSpec, ProcessSpec

__all__ = ["PROCESS", "EchoInputs"]


class EchoInputs(BaseModel):
    """Inputs of the echo process."""

    model_config = ConfigDict(extra="forbid")
    message: str = Field(description="Any text; returned unchanged as output 'message'.",
                         max_length=100_000)


def execute(inputs: BaseModel, ctx: JobContext) -> dict[str, Any]:
    """Return the message (progress goes straight to done)."""
    assert isinstance(inputs, EchoInputs)
    ctx.progress(1.0, "echoed")
    return {"message": inputs.message}


PROCESS = ProcessSpec(
    id="echo", title="Echo", version="1.0.0",
    description="Returns its input 'message' unchanged (for clients and test suites).",
    inputs_model=EchoInputs,
    outputs={"message": OutputSpec("The input message", "literal", "text/plain",
                                   {"type": "string"})},
    execute=execute, keywords=("test",),
)
