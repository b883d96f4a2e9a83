#!/usr/bin/env python3
"""Makes the chat-template fixtures ONCE (tests never run Python): every template in templates/
rendered by transformers' own renderer (render_jinja_template: jinja2 ImmutableSandboxedEnvironment,
trim_blocks=True, lstrip_blocks=True, loopcontrols, transformers' tojson / raise_exception /
strftime_now) on a handful of conversations, with and without the generation prompt.

Run:  python3 -m venv /tmp/venv-text && /tmp/venv-text/bin/pip install transformers jinja2
      /tmp/venv-text/bin/python Tests/Fixtures/chat/make_fixtures.py
(made with transformers 5.24.0, jinja2 3.1.6)

Where each template came from (the chat_template of the model's tokenizer_config.json, as quoted):
- llama3.jinja: meta-llama/Meta-Llama-3-8B-Instruct; text as quoted in public code, e.g. the
  LLAMA3 constant beside LLAMA2 in a chat-template helper module (GitHub code search
  "'<|start_header_id|>' + message['role'] + '<|end_header_id|>").
- llama3.2.jinja: meta-llama/Llama-3.2-*-Instruct (get_llama32_instruct_chat_template() in a public
  fine-tuning utility that renders it with transformers' _compile_jinja_template).
- llama2.jinja: meta-llama/Llama-2-13b-chat-hf (listed under that name in a public Swift
  tokenizer test table beside mistralai/Mixtral-8x7B-Instruct-v0.1).
- mixtral.jinja, qwen2.5.jinja, mistral-nemo.jinja: huggingface/swift-jinja
  Tests/Templates/ChatTemplateTests.swift (parent of commit 80d3567), tests
  testMistralaiMixtral8x7BInstructV0_1 (mistralai/Mixtral-8x7B-Instruct-v0.1),
  testQwenQwen2_5_0_5BInstruct (Qwen/Qwen2.5-0.5B-Instruct), testMistralNemoInstruct2407
  (mistralai/Mistral-Nemo-Instruct-2407); Swift string literals decoded verbatim.
"""
import json
import os

import jinja2
import transformers
from transformers.utils.chat_template_utils import render_jinja_template

HERE = os.path.dirname(os.path.abspath(__file__))

TOKENS = {
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama3.2": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama2": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "mixtral": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "mistral-nemo": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "qwen2.5": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
}

SYSTEM = {"role": "system", "content": "You are a pirate. Answer in one line."}
CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "What is the capital of France?"}],
    "system_multi_turn": [
        SYSTEM,
        {"role": "user", "content": "Hello, how are you?"},
        {"role": "assistant", "content": "Arr, I be fine!"},
        {"role": "user", "content": "Where is the treasure?"},
    ],
    "two_turns_no_system": [
        {"role": "user", "content": "2 + 2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3 + 3?"},
        {"role": "assistant", "content": "6."},
    ],
    "whitespace_unicode_quotes": [
        {"role": "user", "content": "  \n Héllo «wörld» — it's \"quoted\" 😀\t\n\n"},
        {"role": "assistant", "content": "\n\n  Sure: 'ok' \\ done.  \n"},
    ],
    "roles_not_alternating": [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
    ],
}

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name, e.g. Zürich"},
                           "days": {"type": "integer", "minimum": 1, "maximum": 7.5}},
            "required": ["city"],
        },
    },
}]
TOOL_CONVERSATION = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "abc123xyz", "type": "function",
         "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]},
    {"role": "tool", "content": "{\"temp\": 21.5}", "tool_call_id": "abc123xyz"},
]
TOOL_TEMPLATES = {"qwen2.5", "llama3.2", "mistral-nemo"}


def render(template, messages, add_generation_prompt, extra):
    try:
        out, _ = render_jinja_template(conversations=[messages], chat_template=template,
                                       add_generation_prompt=add_generation_prompt, **extra)
        return {"rendered": out[0]}
    except Exception as e:  # raise_exception in the template
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    for name, tokens in TOKENS.items():
        path = os.path.join(HERE, "templates", name + ".jinja")
        with open(path, encoding="utf-8") as f:
            template = f.read()
        cases = []
        for conv_name, messages in CONVERSATIONS.items():
            for gen in (False, True):
                extra = dict(tokens)
                if name == "llama3.2":
                    extra["date_string"] = "26 Jul 2024"
                cases.append({"name": conv_name, "messages": messages, "add_generation_prompt": gen,
                              "variables": {k: v for k, v in extra.items()},
                              **render(template, messages, gen, extra)})
        if name in TOOL_TEMPLATES:
            extra = dict(tokens, tools=TOOLS)
            if name == "llama3.2":
                extra["date_string"] = "26 Jul 2024"
            convs = {"tools_in_prompt": [{"role": "user", "content": "Weather in Paris?"}]}
            if name == "qwen2.5":
                convs["tool_call_and_response"] = TOOL_CONVERSATION
            for conv_name, messages in convs.items():
                cases.append({"name": conv_name, "messages": messages, "add_generation_prompt": True,
                              "variables": extra, **render(template, messages, True, extra)})
        doc = {"template_file": "templates/" + name + ".jinja",
               "made_by": f"transformers {transformers.__version__} render_jinja_template, jinja2 {jinja2.__version__}",
               "cases": cases}
        with open(os.path.join(HERE, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(name, len(cases), "cases,", sum("error" in c for c in cases), "errors")


if __name__ == "__main__":
    main()
