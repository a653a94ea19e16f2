"""An Ollama Modelfile for an exported GGUF: the chat format the model was trained with, written as a Go template.

The Jinja templates in `lapidar.models.qwen` are the source of truth; the Go templates below render the same text
for the messages Ollama passes (tested against the Jinja in tests/unit/test_export_ollama.py). Ollama keeps system
messages in `.Messages` and inserts the Modelfile's SYSTEM as the first message when a request has none, which is
how Qwen2.5's default system prompt appears here.
"""

from __future__ import annotations

__all__ = ["DEFAULT_SYSTEM", "TEMPLATES", "create_command", "modelfile"]

DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# Qwen2.5 ChatML. A trailing assistant message is left open (no <|im_end|>) so Ollama can continue it.
_CHATML = """{{- if .Messages }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "assistant" }}<|im_start|>assistant
{{ .Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ else }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}
{{- if and $last (ne .Role "assistant") }}<|im_start|>assistant
{{ end }}
{{- end }}
{{- else }}
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}"""

# lapidar's plain template for base models (resources/base_plain_template.jinja).
_PLAIN = """{{- if .Messages }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "system" }}{{ .Content }}

{{ else if eq .Role "user" }}### Question:
{{ .Content }}

{{ else if eq .Role "assistant" }}### Answer:
{{ .Content }}{{ if not $last }}<|endoftext|>

{{ end }}
{{- end }}
{{- if and $last (ne .Role "assistant") }}### Answer:
{{ end }}
{{- end }}
{{- else }}
{{- if .System }}{{ .System }}

{{ end }}{{ if .Prompt }}### Question:
{{ .Prompt }}

{{ end }}### Answer:
{{ end }}{{ .Response }}{{ if .Response }}<|endoftext|>{{ end }}"""

TEMPLATES: dict[str, str] = {"instruct": _CHATML, "base": _PLAIN}

# Qwen2.5-Instruct's recommended sampling (its generation_config.json); both end-of-turn markers stop.
_PARAMETERS: list[tuple[str, str]] = [
    ("stop", '"<|im_end|>"'),
    ("stop", '"<|endoftext|>"'),
    ("temperature", "0.7"),
    ("top_p", "0.8"),
    ("top_k", "20"),
    ("repeat_penalty", "1.05"),
]


def modelfile(gguf_file: str, kind: str, num_ctx: int = 4096, note: str = "") -> str:
    """The Modelfile text for `gguf_file` (a path relative to the Modelfile) of an `instruct` or `base` model."""
    if kind not in TEMPLATES:
        raise ValueError(f"unknown model kind {kind!r}")
    lines = [f"# {line}" for line in note.splitlines()] if note else []
    lines += [f"FROM ./{gguf_file}", "", f'TEMPLATE """{TEMPLATES[kind]}"""', ""]
    if kind == "instruct":
        lines += [f'SYSTEM """{DEFAULT_SYSTEM}"""', ""]
    lines += [f"PARAMETER {key} {value}" for key, value in [*_PARAMETERS, ("num_ctx", str(num_ctx))]]
    return "\n".join(lines) + "\n"


def create_command(name: str, modelfile_path: str) -> str:
    """The shell line that registers the export with Ollama."""
    return f"ollama create {name} -f {modelfile_path}"
